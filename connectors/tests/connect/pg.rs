//! A throwaway PostgreSQL for tests: the server binaries of the machine
//! (Debian's `postgresql` package: `initdb`, `pg_ctl`) run on a free
//! loopback port with `wal_level=logical`, in a temporary directory, as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root);
//! stopped when dropped. With `PLEXUS_TEST_PG_URL` set, that server is
//! used instead. There is no skipping: a machine without the binaries
//! fails the test with how to install them.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A running server.
pub(crate) struct Postgres {
    /// `postgres://…` to connect with.
    pub(crate) url: String,
    /// Port, for `psql -p`.
    pub(crate) port: u16,
    bin: Option<PathBuf>,
    data: Option<tempfile::TempDir>,
    user: Option<String>,
}

fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").exists()).collect())
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL server binaries (initdb) under /usr/lib/postgresql: `apt-get install postgresql`, or set PLEXUS_TEST_PG_URL")
    })
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a server binary, as `user` if given.
fn run(user: Option<&str>, bin: &Path, args: &[&str]) {
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let out = cmd.args(args).output().unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Postgres {
    /// Starts a server (or names the one in `PLEXUS_TEST_PG_URL`).
    pub(crate) fn start() -> Self {
        if let Ok(url) = std::env::var("PLEXUS_TEST_PG_URL") {
            let port =
                url.rsplit(':').next().and_then(|p| p.split('/').next()).and_then(|p| p.parse().ok()).unwrap_or(5432);
            return Self { url, port, bin: None, data: None, user: None };
        }
        let bin = bin_dir();
        let user = is_root().then(|| "postgres".to_owned());
        let dir = tempfile::tempdir().expect("tmp");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        if let Some(u) = &user {
            // The server's user must reach and own its directories.
            let ids = |flag: &str| -> u32 {
                let out = Command::new("id").args([flag, u]).output().expect("id");
                String::from_utf8_lossy(&out.stdout).trim().parse().expect("an id")
            };
            let (uid, gid) = (ids("-u"), ids("-g"));
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown");
        }
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
        let d = data.to_str().expect("utf8");
        run(
            user.as_deref(),
            &bin.join("initdb"),
            &["-D", d, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
        );
        let options = format!(
            "-p {port} -k {d} -c listen_addresses=127.0.0.1 -c wal_level=logical -c max_replication_slots=10 \
             -c max_wal_senders=10 -c fsync=off"
        );
        let log = format!("{d}/server.log");
        run(user.as_deref(), &bin.join("pg_ctl"), &["-D", d, "-o", &options, "-l", &log, "-w", "start"]);
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            port,
            bin: Some(bin),
            data: Some(dir),
            user,
        }
    }

    /// Runs SQL with `psql`, returning its unaligned output.
    pub(crate) fn psql(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([&self.url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .expect("psql");
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let (Some(bin), Some(dir)) = (&self.bin, &self.data) {
            let d = dir.path().join("data");
            let mut cmd = match &self.user {
                Some(u) => {
                    let mut c = Command::new("runuser");
                    c.args(["-u", u, "--"]).arg(bin.join("pg_ctl"));
                    c
                }
                None => Command::new(bin.join("pg_ctl")),
            };
            let _ = cmd.arg("-D").arg(&d).args(["-m", "immediate", "-w", "stop"]).output();
        }
    }
}

#[test]
fn the_harness_runs_its_own_postgres_with_logical_decoding() {
    let pg = Postgres::start();
    assert_eq!(pg.psql("SHOW wal_level"), "logical");
    pg.psql("CREATE TABLE t (id int PRIMARY KEY, name text)");
    pg.psql("INSERT INTO t VALUES (1, 'ada'), (2, 'bob')");
    assert_eq!(pg.psql("SELECT string_agg(name, ',' ORDER BY id) FROM t"), "ada,bob");
    assert!(pg.port > 0);
}
