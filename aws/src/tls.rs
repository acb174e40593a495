//! TLS for the runtimes' HTTP clients (feature `tls`): the platform's root certificates, the
//! aws-lc-rs provider, the safe default protocol versions.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};

/// A client configuration trusting the platform's root certificates. `Err` says why there are
/// none (the certificate store could not be read, or held nothing rustls can use).
pub fn platform_config() -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for cert in loaded.certs {
        // A certificate the platform store holds but rustls cannot parse is skipped.
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!(
            "no usable root certificates on this machine ({:?})",
            loaded.errors
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
