//! `chat-server`: the one scalable-chat binary. `chat-server <role>` runs one service; `all` runs
//! every service in one process; `migrate` creates the database indexes and exits.

use std::process::ExitCode;

use chat_domain::config::Config;
use chat_server::app::{self, Application, StartError};
use chat_server::{memory, shutdown, telemetry, Role};

const USAGE: &str = "\
usage: chat-server <role>

roles:
  gateway   the public REST API (default port 5000)
  auth      accounts, passwords and tokens over RPC (health on port 3004)
    group     groups, direct conversations and membership over RPC (health on port 3002)
  message   persists chat commands from Kafka; history and search over RPC (health on port 3003)
  chat      Socket.IO at /socket.io (port 3001)
  all       every role in one process (port 5000)
  migrate   create the MongoDB indexes, then exit

Configuration comes from environment variables; see the README. Every variable has a default
that works with `scripts/infra.sh up`.

options:
  -h, --help     this text
  -V, --version  the version";

fn main() -> ExitCode {
    // Returns only when it did not start the program again.
    let kept_thread_caches = memory::restart_without_thread_caches();
    memory::keep_the_allocator_lean();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = match args.first().map(String::as_str) {
        None | Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            return if args.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
        Some("-V" | "--version") => {
            println!("chat-server {}", chat_domain::VERSION);
            return ExitCode::SUCCESS;
        }
        Some(name) => match Role::parse(name) {
            Some(role) if args.len() == 1 => role,
            _ => {
                eprintln!("chat-server: unknown arguments {args:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        },
    };
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("chat-server: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format, &config.log_filter);
    if let Some(e) = kept_thread_caches {
        tracing::warn!(error = %e, "cannot start again without glibc's thread caches; memory freed under load stays resident longer");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chat-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(role, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(role = role.name(), error = %e, "cannot run");
            eprintln!("chat-server {}: {e}", role.name());
            ExitCode::FAILURE
        }
    }
}

async fn run(role: Role, config: Config) -> Result<(), StartError> {
    let embedded = app::embedded_mode(role, &config)?;
    if embedded {
        tracing::info!(data = %config.data_dir.display(),
            "embedded mode: no MONGODB_URI, RABBITMQ_URI, KAFKA_BROKERS or REDIS_URL set, so every \
             role runs in this process on an embedded database; set all four to use the real servers");
    }
    tracing::info!(role = role.name(), version = chat_domain::VERSION, namespace = %config.namespace, "starting");
    if role == Role::Migrate {
        return app::migrate(&config).await;
    }
    // Which broker, password masked; none in embedded mode, whose bus is in-process.
    let rabbitmq = (!embedded).then(|| config.rabbitmq_uri.redacted_uri());
    let address_file = config.address_file.clone();
    let application = Application::build(role, config, shutdown::on_signal()).await?;
    tokio::spawn(memory::give_back_after_busy_spells());
    let address = application.address().map_err(StartError::Listen)?;
    match rabbitmq {
        Some(rabbitmq) => tracing::info!(role = role.name(), %address, %rabbitmq, "listening"),
        None => tracing::info!(role = role.name(), %address, "listening"),
    }
    if let Some(path) = address_file {
        report_address(&path, address)?;
    }
    application.run_until_stopped().await
}

/// Writes the bound address to `path` whole (a reader never sees half of it).
fn report_address(path: &std::path::Path, address: std::net::SocketAddr) -> Result<(), StartError> {
    let partial = path.with_extension("partial");
    std::fs::write(&partial, address.to_string())
        .and_then(|()| std::fs::rename(&partial, path))
        .map_err(|e| {
            StartError::Startup(chat_ports::startup::StartupError::File {
                path: path.to_path_buf(),
                why: e.to_string(),
            })
        })
}
