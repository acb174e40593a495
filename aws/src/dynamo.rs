//! The lease table on DynamoDB.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as Sdk, BillingMode, KeySchemaElement, KeyType,
    ReturnValue, ScalarAttributeType, TableStatus,
};
use aws_sdk_dynamodb::Client;
use kcl_core::lease::attr;
use kcl_core::write::{LeaseWrite, WriteAction};
use kcl_core::{AttributeValue, Failure, Item};

use crate::backend::LeaseTable;
use crate::expression::Expressions;
use crate::failure::classify;
use crate::item::{item_from_sdk, item_to_sdk};
use crate::runtime::Runtime;

/// The lease table in the Java KCL 2.x layout: one table, hash key `leaseKey` (a string).
#[derive(Clone, Debug)]
pub struct DynamoLeaseTable {
    client: Client,
    table: String,
}

impl DynamoLeaseTable {
    /// The table `table` through a client built from `client`'s configuration **with the SDK's
    /// retries turned off**: a conditional write the SDK repeats after a lost answer can fail its
    /// own condition and look like a lost race. The driver retries what may be retried.
    pub fn new(client: &Client, table: impl Into<String>) -> Self {
        let config = client
            .config()
            .to_builder()
            .retry_config(RetryConfig::disabled())
            .build();
        Self {
            client: Client::from_conf(config),
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    /// Creates the table if it does not exist (on-demand capacity, as the Java KCL does by
    /// default) and waits until it is `ACTIVE`, for at most `timeout`.
    pub async fn ensure_table(
        &self,
        runtime: &impl Runtime,
        timeout: Duration,
    ) -> Result<(), Failure> {
        let started = runtime.now();
        let mut created = false;
        loop {
            match self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
            {
                Ok(described) => {
                    let status = described.table().and_then(|t| t.table_status());
                    if status == Some(&TableStatus::Active) {
                        return Ok(());
                    }
                }
                Err(e) => match classify(&e) {
                    Failure::NotFound if !created => {
                        self.create_table().await?;
                        created = true;
                        continue;
                    }
                    Failure::NotFound | Failure::Throttled | Failure::Transient => {}
                    other => return Err(other),
                },
            }
            if runtime.now().duration_since(started) >= timeout {
                return Err(Failure::Other(format!(
                    "lease table {} is not ACTIVE after {timeout:?}",
                    self.table
                )));
            }
            runtime.sleep(Duration::from_millis(500)).await;
        }
    }

    async fn create_table(&self) -> Result<(), Failure> {
        let key = |name: &str| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(KeyType::Hash)
                .build()
        };
        let definition = AttributeDefinition::builder()
            .attribute_name(attr::LEASE_KEY)
            .attribute_type(ScalarAttributeType::S)
            .build();
        let (Ok(key), Ok(definition)) = (key(attr::LEASE_KEY), definition) else {
            return Err(Failure::Other("lease table schema did not build".into()));
        };
        let result = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(definition)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Another worker created it first.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                Ok(())
            }
            Err(e) => Err(classify(&e)),
        }
    }

    fn key(key: &str) -> HashMap<String, Sdk> {
        HashMap::from([(attr::LEASE_KEY.to_string(), Sdk::S(key.to_string()))])
    }
}

impl LeaseTable for DynamoLeaseTable {
    async fn scan(&self) -> Result<Vec<Item>, Failure> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, Sdk>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| classify(&e))?;
            items.extend(page.items().iter().map(item_from_sdk));
            match page.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }

    async fn read(&self, key: &str) -> Result<Option<Item>, Failure> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(&e))?;
        Ok(got.item().map(item_from_sdk))
    }

    async fn write(&self, write: &LeaseWrite) -> Result<Option<Item>, Failure> {
        let mut expressions = Expressions::default();
        let condition = expressions.condition(&write.condition);
        match &write.action {
            WriteAction::Put(item) => {
                let mut item = item.clone();
                item.insert(
                    attr::LEASE_KEY.into(),
                    AttributeValue::S(write.key.as_str().into()),
                );
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item_to_sdk(&item)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(expressions.names())
                    .set_expression_attribute_values(expressions.values())
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                // PutItem cannot return the new item, but it is exactly what was put.
                Ok(write.return_item.then_some(item))
            }
            WriteAction::Update(updates) => {
                let update = expressions.update(updates);
                let updated = self
                    .client
                    .update_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::key(&write.key)))
                    .set_update_expression(update)
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(expressions.names())
                    .set_expression_attribute_values(expressions.values())
                    .return_values(if write.return_item {
                        ReturnValue::AllNew
                    } else {
                        ReturnValue::None
                    })
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                Ok(write
                    .return_item
                    .then(|| updated.attributes().map(item_from_sdk))
                    .flatten())
            }
            WriteAction::Delete => {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(Self::key(&write.key)))
                    .set_condition_expression(condition)
                    .set_expression_attribute_names(expressions.names())
                    .set_expression_attribute_values(expressions.values())
                    .send()
                    .await
                    .map_err(|e| classify(&e))?;
                Ok(None)
            }
        }
    }
}
