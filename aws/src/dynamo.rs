//! The lease table on DynamoDB.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue as Sdk, BillingMode, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, ProvisionedThroughput, ReturnValue, ScalarAttributeType,
    TableStatus, Tag,
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

/// How the lease table is made when it is absent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TableOptions {
    /// Create the table when it is absent (default). Without, an absent table is an error
    /// (`Failure::NotFound`): for deployments whose role has no `dynamodb:CreateTable`.
    pub create_if_absent: bool,
    /// Provisioned read and write capacity units instead of on-demand (`PAY_PER_REQUEST`, the
    /// default, as the Java KCL's).
    pub provisioned: Option<(i64, i64)>,
    /// Tags put on a table this worker creates (`dynamodb:TagResource`).
    pub tags: Vec<(String, String)>,
    /// Turn on point-in-time recovery on a table this worker creates
    /// (`dynamodb:UpdateContinuousBackups`; the Java KCL 3.x's `pointInTimeRecoveryEnabled`).
    /// Off by default, as in the Java KCL.
    pub point_in_time_recovery: bool,
    /// Create the table with deletion protection, so that `DeleteTable` is refused until it is
    /// turned off (the Java KCL 3.x's `deletionProtectionEnabled`). Off by default.
    pub deletion_protection: bool,
}

impl Default for TableOptions {
    fn default() -> Self {
        Self {
            create_if_absent: true,
            provisioned: None,
            tags: Vec::new(),
            point_in_time_recovery: false,
            deletion_protection: false,
        }
    }
}

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
        self.ensure_table_with(runtime, timeout, &TableOptions::default())
            .await
    }

    /// As [`ensure_table`](Self::ensure_table), made as `options` say; an absent table is
    /// `Failure::NotFound` when it may not be created.
    pub async fn ensure_table_with(
        &self,
        runtime: &impl Runtime,
        timeout: Duration,
        options: &TableOptions,
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
                    let table = described.table();
                    if let Some(t) = table {
                        self.check_key(t)?;
                    }
                    if table.and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                        if created && !options.tags.is_empty() {
                            let arn = table.and_then(|t| t.table_arn()).unwrap_or_default();
                            self.tag(arn, &options.tags).await?;
                        }
                        if created && options.point_in_time_recovery {
                            self.enable_point_in_time_recovery().await?;
                        }
                        return Ok(());
                    }
                }
                Err(e) => match classify(&e) {
                    Failure::NotFound if !options.create_if_absent => {
                        return Err(Failure::NotFound)
                    }
                    Failure::NotFound if !created => {
                        self.create_table(options).await?;
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

    /// A lease table is keyed by `leaseKey` alone, a string: a table of the name with another
    /// key is someone else's, and every write to it would fail.
    fn check_key(&self, table: &aws_sdk_dynamodb::types::TableDescription) -> Result<(), Failure> {
        let key: Vec<String> = table
            .key_schema()
            .iter()
            .map(|k| {
                let kind = table
                    .attribute_definitions()
                    .iter()
                    .find(|d| d.attribute_name() == k.attribute_name())
                    .map_or("?", |d| d.attribute_type().as_str());
                format!("{} ({kind}, {})", k.attribute_name(), k.key_type().as_str())
            })
            .collect();
        let expected = format!("{} (S, HASH)", attr::LEASE_KEY);
        if key.len() == 1 && key[0] == expected {
            return Ok(());
        }
        Err(Failure::Other(format!(
            "table {} is not a lease table: its key is {}, a lease table's is {expected}; name another with ConsumerBuilder::lease_table",
            self.table,
            key.join(" + ")
        )))
    }

    async fn enable_point_in_time_recovery(&self) -> Result<(), Failure> {
        let Ok(spec) = PointInTimeRecoverySpecification::builder()
            .point_in_time_recovery_enabled(true)
            .build()
        else {
            return Err(Failure::Other(
                "point-in-time recovery did not build".into(),
            ));
        };
        self.client
            .update_continuous_backups()
            .table_name(&self.table)
            .point_in_time_recovery_specification(spec)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    async fn tag(&self, arn: &str, tags: &[(String, String)]) -> Result<(), Failure> {
        let tags: Vec<Tag> = tags
            .iter()
            .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
            .collect();
        self.client
            .tag_resource()
            .resource_arn(arn)
            .set_tags(Some(tags))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }

    async fn create_table(&self, options: &TableOptions) -> Result<(), Failure> {
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
        let request = self
            .client
            .create_table()
            .table_name(&self.table)
            .key_schema(key)
            .attribute_definitions(definition);
        // Only when asked: an emulator without the parameter keeps working.
        let request = if options.deletion_protection {
            request.deletion_protection_enabled(true)
        } else {
            request
        };
        let request = match options.provisioned {
            None => request.billing_mode(BillingMode::PayPerRequest),
            Some((read, write)) => {
                let Ok(capacity) = ProvisionedThroughput::builder()
                    .read_capacity_units(read)
                    .write_capacity_units(write)
                    .build()
                else {
                    return Err(Failure::Other("provisioned capacity did not build".into()));
                };
                request
                    .billing_mode(BillingMode::Provisioned)
                    .provisioned_throughput(capacity)
            }
        };
        let result = request.send().await;
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
    async fn scan(&self, consistent: bool) -> Result<Vec<Item>, Failure> {
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, Sdk>> = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_exclusive_start_key(start.take())
                .consistent_read(consistent)
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

    async fn read(&self, key: &str, consistent: bool) -> Result<Option<Item>, Failure> {
        let got = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .consistent_read(consistent)
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
