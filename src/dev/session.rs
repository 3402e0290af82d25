//! `tokenvend dev`: the local issuer, the Kubernetes API stand-in and the service, wired
//! together on loopback, with copy-paste commands to try them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use crate::config::Config;
use crate::policy::ServiceAccountRef;
use crate::service::{Application, Listen, shutdown_signal};
use crate::telemetry::{self, LogFormat};
use kube_standin::{ApiServer, ApiServerOptions, RbacRule, SeedServiceAccount, SeedUser};
use local_issuer::LocalIssuer;

/// The embedded default config.
pub const DEV_CONFIG: &str = include_str!("../../config/dev.yaml");
/// The issuer URL written in config/dev.yaml (the default `--issuer-listen`).
pub const DEV_ISSUER_URL: &str = "http://127.0.0.1:5556";
/// The user tokenvend authenticates as to the stand-in.
pub const SERVICE_USER: &str = "system:serviceaccount:tokenvend:tokenvend";

/// Flags of `tokenvend dev`. Every address must be a loopback address.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Use this config instead of the embedded config/dev.yaml. One of its issuers must be the local issuer's URL.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The service's public listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The service's admin (metrics) listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// The local OIDC issuer (its URL is http://ADDR).
    #[arg(long, default_value = "127.0.0.1:5556")]
    issuer_listen: SocketAddr,
    /// The Kubernetes API stand-in (https://ADDR).
    #[arg(long, default_value = "127.0.0.1:6443")]
    apiserver_listen: SocketAddr,
    /// Where the stand-in's kubeconfig and CA are written.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("tokenvend-dev"))]
    state_dir: PathBuf,
    /// With --config: how often the file is checked for changes (it is also reloaded on SIGHUP).
    #[arg(long, default_value = "2s")]
    config_poll_interval: crate::config::ConfigDuration,
    /// Share replay records and rate limits through this Redis (redis:// or rediss://, no
    /// password in it: TOKENVEND_STORE_PASSWORD), as `store.url` does; overrides the config's
    /// `store:`. Default: in this process only.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Application log format.
    #[arg(long, value_enum, default_value = "pretty")]
    log_format: LogFormat,
}

/// Runs the three parts until Ctrl-C or SIGTERM, then stops all of them.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format)?;
    serving::crypto::install_providers()?;
    for (flag, addr) in [
        ("--listen", args.listen),
        ("--admin-listen", args.admin_listen),
        ("--issuer-listen", args.issuer_listen),
        ("--apiserver-listen", args.apiserver_listen),
    ] {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "{flag} {addr}: dev binds loopback addresses only"
        );
    }
    let issuer = LocalIssuer::start(args.issuer_listen)
        .await
        .context("starting the local issuer")?;
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        // The embedded config names the default issuer address; follow --issuer-listen.
        None => Config::parse(
            &DEV_CONFIG.replace(DEV_ISSUER_URL, issuer.url()),
            Path::new("config/dev.yaml"),
        )?,
    };
    anyhow::ensure!(
        config.issuers.iter().any(|i| i.url == issuer.url()),
        "the config has no issuer with url {}; dev's local issuer listens there",
        issuer.url()
    );
    if let Some(url) = &args.store {
        crate::store::check_url(url).map_err(|message| anyhow::anyhow!("--store: {message}"))?;
        config.store = Some(crate::store::StoreSettings {
            url: url.clone(),
            password_file: None,
            ca_file: None,
            timeout: crate::store::DEFAULT_TIMEOUT,
        });
    }
    let user_token = uuid::Uuid::new_v4().simple().to_string();
    let apiserver = ApiServer::start(
        args.apiserver_listen,
        stand_in_options(&config, &user_token),
    )
    .await
    .context("starting the Kubernetes API stand-in")?;
    let kubeconfig_path = write_state(&args.state_dir, &apiserver, &user_token)?;
    let kube_config =
        kube_config_for(&apiserver, &user_token, config.kubernetes.request_timeout).await?;
    let listen = Listen {
        public: args.listen,
        admin: args.admin_listen,
    };
    let mut app = Application::build(config, listen, kube_config).await?;
    if let Some(path) = &args.config {
        app = app.watch_config(path.clone(), args.config_poll_interval.0);
    }
    println!(
        "{}",
        banner(&issuer, &apiserver, &app, &args.state_dir, &kubeconfig_path)
    );
    let served = app.run_until(shutdown_signal()).await;
    apiserver.shutdown().await;
    issuer.shutdown().await;
    served
}

/// Seeds every service account the policies name, and lets tokenvend mint exactly those.
pub fn stand_in_options(config: &Config, user_token: &str) -> ApiServerOptions {
    let granted: BTreeSet<ServiceAccountRef> = config
        .policies
        .iter()
        .flat_map(|p| {
            p.grant
                .service_accounts
                .iter()
                .filter_map(|sa| sa.fixed().cloned())
        })
        .collect();
    let mut rbac: Vec<RbacRule> = Vec::new();
    for namespace in granted
        .iter()
        .map(ServiceAccountRef::namespace)
        .collect::<BTreeSet<_>>()
    {
        let names = granted
            .iter()
            .filter(|sa| sa.namespace() == namespace)
            .map(|sa| sa.name().to_owned())
            .collect();
        rbac.push(RbacRule {
            user: SERVICE_USER.to_owned(),
            verbs: vec!["create".into()],
            api_groups: vec![String::new()],
            resources: vec!["serviceaccounts/token".into()],
            resource_names: names,
            namespace: Some(namespace.to_owned()),
            ..RbacRule::default()
        });
    }
    // Revocable tokens: binding Secrets in the namespaces of revocable grants (create, delete,
    // and deletecollection for the sweeper; never get, list or watch), and TokenReviews for
    // `POST /oauth2/revoke`.
    let revocable = config.policies.revocable_namespaces();
    for namespace in &revocable {
        rbac.push(RbacRule {
            user: SERVICE_USER.to_owned(),
            verbs: vec!["create".into(), "delete".into(), "deletecollection".into()],
            api_groups: vec![String::new()],
            resources: vec!["secrets".into()],
            namespace: Some(namespace.clone()),
            ..RbacRule::default()
        });
    }
    if !revocable.is_empty() {
        rbac.push(RbacRule::allow(
            SERVICE_USER,
            &["create"],
            &["authentication.k8s.io"],
            &["tokenreviews"],
        ));
    }
    ApiServerOptions {
        service_accounts: granted
            .iter()
            .map(|sa| SeedServiceAccount::new(sa.namespace(), sa.name()))
            .collect(),
        users: vec![SeedUser::new(user_token, SERVICE_USER)],
        rbac,
        ..ApiServerOptions::default()
    }
}

/// A kube client configuration for the stand-in, tuned for the request path.
pub async fn kube_config_for(
    apiserver: &ApiServer,
    user_token: &str,
    request_timeout: std::time::Duration,
) -> anyhow::Result<kube::Config> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&apiserver.kubeconfig(user_token))?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await?;
    Ok(crate::k8s::for_request_path(config, request_timeout))
}

fn write_state(dir: &Path, apiserver: &ApiServer, user_token: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let kubeconfig = dir.join("kubeconfig");
    write_private(&kubeconfig, &apiserver.kubeconfig(user_token))?;
    write_private(&dir.join("ca.crt"), apiserver.ca_pem())?;
    Ok(kubeconfig)
}

/// Writes a file readable by its owner only: it holds a credential.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

fn banner(
    issuer: &LocalIssuer,
    apiserver: &ApiServer,
    app: &Application,
    dir: &Path,
    kubeconfig: &Path,
) -> String {
    let service = format!("http://{}", app.public_addr());
    format!(
        r#"
tokenvend dev is running (Ctrl-C stops it)
  service         {service}   (metrics: http://{admin}/metrics)
  OIDC issuer     {issuer_url}
  Kubernetes API  {api}   (stand-in; kubeconfig: {kubeconfig}, CA: {ca})

Get an ID token from the local issuer, as a CI job would from its identity provider:

  ID_TOKEN=$(curl -s '{issuer_url}/token?sub=dev-user&aud=tokenvend&format=raw')

Exchange it for a 15-minute token of the dev/deployer service account:

  curl -s -X POST -H "Authorization: Bearer $ID_TOKEN" {service}/v1/token

Or just the token, and ask the API server who it belongs to:

  SA_TOKEN=$(curl -s -X POST -H "Authorization: Bearer $ID_TOKEN" '{service}/v1/token?format=token')
  kubectl --server {api} --certificate-authority {ca} --token "$SA_TOKEN" auth whoami

The dev-deployer policy is revocable: revoke the token when done (within about 10 s the
API server refuses it; the same kubectl command then fails as unauthorized):

  curl -s -X POST --data-urlencode "token=$SA_TOKEN" {service}/oauth2/revoke
"#,
        admin = app.admin_addr(),
        issuer_url = issuer.url(),
        api = apiserver.url(),
        kubeconfig = kubeconfig.display(),
        ca = dir.join("ca.crt").display(),
    )
}
