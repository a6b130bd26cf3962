//! A private PostgreSQL server for a test: `initdb` in a temp dir, started with `pg_ctl` on a
//! Unix socket in that dir (no TCP port to race for), stopped on drop. As root the server runs
//! as the `postgres` user (initdb refuses root). Needs Debian's `postgresql` package, which
//! `.ci/run` installs.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Postgres {
    bin: PathBuf,
    data: PathBuf,
    as_root: bool,
    /// `postgresql://postgres@%2F…:5432/postgres`
    pub url: String,
    _dir: tempfile::TempDir,
}

fn find_bin() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL server binaries not found under /usr/lib/postgresql: apt-get install postgresql")
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = find_bin();
        let dir = tempfile::Builder::new()
            .prefix("cabin-pg")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let as_root = is_root();
        if as_root {
            run(Command::new("chown")
                .args(["postgres:postgres"])
                .arg(dir.path()));
        }
        let pg = Postgres {
            url: format!(
                "postgresql://postgres@{}:5432/postgres",
                dir.path().display().to_string().replace('/', "%2F")
            ),
            bin,
            data,
            as_root,
            _dir: dir,
        };
        run(pg
            .command("initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "-D",
            ])
            .arg(&pg.data));
        let socket_dir = pg.data.parent().unwrap_or(Path::new("/tmp")).to_path_buf();
        run(pg
            .command("pg_ctl")
            .arg("-D")
            .arg(&pg.data)
            .arg("-o")
            .arg(format!(
                "-p 5432 -k {} -c listen_addresses='' -c max_connections=60",
                socket_dir.display()
            ))
            .arg("-l")
            .arg(socket_dir.join("server.log"))
            .args(["-w", "start"]));
        pg
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin.join(tool);
        if self.as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }
}

fn run(c: &mut Command) {
    let out = c.output().unwrap_or_else(|e| panic!("{c:?}: {e}"));
    assert!(
        out.status.success(),
        "{c:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}
