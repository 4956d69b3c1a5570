//! A real `redis-server` (the Debian package) for the tests of the shared
//! backend: started on a free loopback port in a fresh folder, stopped by
//! pid, and restartable on the same port with its data (append-only file);
//! or a replica of one, or a Sentinel that monitors one.

use std::path::PathBuf;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::DEADLINE;

pub struct RedisServer {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    role: Role,
}

/// What a `RedisServer` runs as.
#[derive(Clone)]
enum Role {
    Primary,
    /// A replica of the server on this port.
    Replica(u16),
    /// A Sentinel that monitors the primary on this port under this name.
    Sentinel(u16, String),
    /// A primary of a Redis Cluster.
    ClusterNode,
}

impl RedisServer {
    /// Starts a server and returns once it accepts connections.
    pub async fn start() -> RedisServer {
        Self::start_as(Role::Primary).await
    }

    /// Starts a replica of `primary`.
    pub async fn replica_of(primary: &RedisServer) -> RedisServer {
        Self::start_as(Role::Replica(primary.port)).await
    }

    /// Starts a Sentinel that monitors `primary` as `name`, with a quorum
    /// of two, and fails it over once it has not answered for a second.
    pub async fn sentinel(primary: &RedisServer, name: &str) -> RedisServer {
        Self::start_as(Role::Sentinel(primary.port, name.to_owned())).await
    }

    async fn start_as(role: Role) -> RedisServer {
        let dir = std::env::temp_dir().join(format!(
            "signalpost-redis-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("a temporary folder can be made");
        let mut server = RedisServer {
            port: 0,
            dir,
            child: None,
            role,
        };
        // The free port is free when asked, not always when redis-server
        // binds it (the tests run side by side): then another one.
        for _ in 0..5 {
            server.port = free_port();
            if server.run().await {
                return server;
            }
        }
        panic!("redis-server did not start on five free ports");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs redis-server on `self.port`; false when it could not (the port
    /// was taken meanwhile).
    async fn run(&mut self) -> bool {
        let mut command = Command::new("redis-server");
        let ready_line = match &self.role {
            Role::Sentinel(primary, name) => {
                // A Sentinel rewrites its configuration file: one of its own.
                let config = self.dir.join("sentinel.conf");
                std::fs::write(
                    &config,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                         sentinel monitor {name} 127.0.0.1 {primary} 2\n\
                         sentinel down-after-milliseconds {name} 1000\n\
                         sentinel failover-timeout {name} 5000\n",
                        port = self.port,
                        dir = self.dir.display(),
                    ),
                )
                .expect("the Sentinel's configuration is written");
                command.arg(&config).arg("--sentinel");
                "+monitor master"
            }
            role => {
                command
                    .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
                    .args([
                        "--save",
                        "",
                        "--appendonly",
                        "yes",
                        "--appendfsync",
                        "always",
                    ])
                    .arg("--dir")
                    .arg(&self.dir);
                if let Role::Replica(primary) = role {
                    command.args(["--replicaof", "127.0.0.1", &primary.to_string()]);
                }
                if let Role::ClusterNode = role {
                    command
                        .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                        .arg("--cluster-config-file")
                        .arg(self.dir.join("nodes.conf"));
                }
                "Ready to accept connections"
            }
        };
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/test installs it)");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let ready = async {
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains(ready_line) {
                    return true;
                }
            }
            false
        };
        match tokio::time::timeout(DEADLINE, ready).await {
            Ok(true) => {}
            Ok(false) => return false,
            Err(_) => panic!("redis-server on port {} did not become ready", self.port),
        }
        // Keep reading so that a full pipe never blocks the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
        true
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("redis-server can be killed");
        }
    }

    /// Starts the server again on the same port, with the data it had.
    pub async fn restart(&mut self) {
        self.stop().await;
        assert!(
            self.run().await,
            "redis-server restarts on port {}",
            self.port
        );
    }
}

/// A Redis Cluster of three primaries (no replicas), each holding a third
/// of the slots: three `redis-server --cluster-enabled yes` joined by
/// `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the three and returns once every node says the cluster is ok.
    pub async fn start() -> RedisCluster {
        Self::start_with_replicas(0).await
    }

    /// Three primaries, each with `replicas` replicas (`nodes` holds the
    /// primaries first, as `redis-cli --cluster create` pairs them).
    pub async fn start_with_replicas(replicas: usize) -> RedisCluster {
        let nodes = futures_util::future::join_all(
            (0..3 * (1 + replicas)).map(|_| RedisServer::start_as(Role::ClusterNode)),
        )
        .await;
        let addrs: Vec<String> = nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .expect("redis-cli runs (scripts/test installs redis-tools)");
        assert!(created.success(), "redis-cli --cluster create succeeds");
        let cluster = RedisCluster { nodes };
        for node in &cluster.nodes {
            crate::helpers::eventually("the cluster is ok on every node", 4 * DEADLINE, || async {
                let client = redis::Client::open(node.url()).expect("a valid URL");
                let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
                    return false;
                };
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .unwrap_or_default();
                info.contains("cluster_state:ok")
            })
            .await;
        }
        cluster
    }

    /// The `--redis-url` of a node: every node's URL, comma-separated.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("127.0.0.1:0 can be bound")
        .port()
}
