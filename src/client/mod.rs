//! `tokenvend token`: the client. It obtains the caller's OIDC ID token ([`source`]), exchanges
//! it at the service ([`service`]) and prints, writes ([`private_file`]) or keeps refreshing
//! ([`watch`]) the result in the chosen [`output`]. As a kubectl exec plugin it reuses a cached
//! credential ([`cache`]) until shortly before it expires. With `--revoke` it hands a token
//! back instead ([`revoke`]).

mod args;
pub mod cache;
pub mod output;
pub mod private_file;
pub mod revoke;
pub mod service;
pub mod source;
pub mod watch;

use anyhow::Context as _;
use jiff::Timestamp;

pub use args::TokenArgs;
use cache::CredentialCache;
use output::Output;
use service::{Service, TokenDocument, TokenWish};
use source::IdTokenSource;

/// What one run needs, resolved from the flags.
struct Client {
    source: IdTokenSource,
    service: Service,
    wish: TokenWish,
    output: Output,
}

/// Runs `tokenvend token` to completion; with `--watch`, until `shutdown` resolves.
///
/// # Errors
/// Bad flags, no ID token, a refusal by the service, or a file that cannot be written.
pub async fn run(
    args: TokenArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    args.init_logging()?;
    serving::crypto::install_providers()?;
    if let Some(path) = &args.revoke {
        let service = Service::new(&args.server, args.ca_file.as_deref())?;
        return revoke::run(&service, path).await;
    }
    let client = Client {
        source: args.source()?,
        service: Service::new(&args.server, args.ca_file.as_deref())?,
        wish: args.wish()?,
        output: args.output(),
    };
    if args.watch {
        let out = args.out.as_deref().context("--watch needs --out FILE")?;
        anyhow::ensure!(
            client.source.is_repeatable(),
            "--watch cannot re-read an ID token from stdin; use a file, env var or GitHub Actions"
        );
        let obtain = || client.fresh();
        return watch::run(out, args.schedule(), obtain, shutdown).await;
    }
    let contents = match args.cache(&client) {
        Some(cache) => client.cached(&cache).await?,
        None => client.fresh().await?.contents,
    };
    match &args.out {
        Some(path) => private_file::replace(path, contents.as_bytes())
            .with_context(|| format!("writing {}", path.display())),
        None => {
            print!("{contents}");
            Ok(())
        }
    }
}

impl Client {
    /// A fresh token document from the service.
    async fn document(&self) -> anyhow::Result<TokenDocument> {
        let id_token = self.source.fetch(self.service.http()).await?;
        Ok(self.service.token(&id_token, &self.wish).await?)
    }

    /// A fresh credential, rendered.
    async fn fresh(&self) -> anyhow::Result<watch::Fresh> {
        let document = self.document().await?;
        Ok(watch::Fresh {
            contents: output::render(&document, self.output)?,
            expiration: document.expiration_timestamp,
        })
    }

    /// The cached credential if it is still good, else a fresh one, cached.
    async fn cached(&self, cache: &CredentialCache) -> anyhow::Result<String> {
        let document = match cache.load(Timestamp::now()) {
            Some(document) => document,
            None => {
                let document = self.document().await?;
                if let Err(error) = cache.store(&document) {
                    tracing::warn!(file = %cache.path().display(), %error, "cannot write the credential cache");
                }
                document
            }
        };
        output::render(&document, self.output)
    }

    /// What distinguishes this request's cached credential from others'.
    fn cache_key(&self, server: &str) -> String {
        let wish = serde_json::to_string(&self.wish).expect("a wish serialises");
        format!("{server}\n{wish}\n{}", self.source)
    }
}
