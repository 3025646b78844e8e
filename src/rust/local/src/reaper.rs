//! A watchdog on a pipe: what the local Azure starts dies with the process that
//! started it, however that process ends (SIGKILL, a crash, a hang-up, a CI cancel).
//!
//! A small `sh` in its own process group (terminal signals to R's group do not reach
//! it) reads the read end of a pipe; the write end stays in this process only (Rust
//! opens pipes close-on-exec, so no child inherits it). Processes are registered as
//! they start and forgotten when they end. When the pipe closes, which the kernel does
//! when this process is gone, the watchdog signals what is still registered: process
//! groups (container processes and their children) get SIGKILL; services get SIGTERM
//! first, on which Azurite saves its data and exits, then SIGKILL if still alive 5 s
//! later. A parent-death signal would not do: Linux sends it when the *thread* that
//! forked exits, and it does not reach the children of `sh -c`.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

const SCRIPT: &str = r#"
trap '' HUP INT TERM PIPE
alive() { # a zombie has ended (its parent may not be there to reap it)
  if [ -r "/proc/$1/stat" ]; then
    read -r _ _ state _ < "/proc/$1/stat" 2>/dev/null || return 1
    [ "$state" != Z ]
  else
    kill -0 "$1" 2>/dev/null
  fi
}
list=' '
while read -r op entry; do
  case $op in
    add) list="$list$entry " ;;
    del) case $list in *" $entry "*) list="${list%% $entry *} ${list#* $entry }" ;; esac ;;
  esac
done
for e in $list; do kill -s "${e%%:*}" -- "${e#*:}" 2>/dev/null; done
n=0
while [ $n -lt 50 ]; do
  alive=
  for e in $list; do
    case $e in TERM:*) alive "${e#*:}" && alive=1 ;; esac
  done
  [ -z "$alive" ] && exit 0
  sleep 0.1
  n=$((n + 1))
done
for e in $list; do
  case $e in TERM:*) kill -s KILL "${e#*:}" 2>/dev/null ;; esac
done
"#;

/// The watchdog process and the write end of its pipe.
pub struct Reaper {
    state: Mutex<Option<(Child, ChildStdin)>>,
}

impl Reaper {
    /// Starts the watchdog (`/bin/sh`).
    pub fn start() -> std::io::Result<Reaper> {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(SCRIPT)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn()?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("the watchdog has no stdin"))?;
        Ok(Reaper {
            state: Mutex::new(Some((child, stdin))),
        })
    }

    /// Kill process group `pgid` (with SIGKILL) if this process dies first.
    pub fn watch_group(&self, pgid: i32) {
        self.send(&format!("add KILL:-{pgid}"));
    }

    /// The group `pgid` has ended: forget it (its id may be reused).
    pub fn forget_group(&self, pgid: i32) {
        self.send(&format!("del KILL:-{pgid}"));
    }

    /// Stop process `pid` with SIGTERM (then SIGKILL) if this process dies first.
    pub fn watch_service(&self, pid: i32) {
        self.send(&format!("add TERM:{pid}"));
    }

    pub fn forget_service(&self, pid: i32) {
        self.send(&format!("del TERM:{pid}"));
    }

    fn send(&self, line: &str) {
        if let Some((_, stdin)) = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            // A watchdog that died cannot be helped; the processes still run.
            let _ = writeln!(stdin, "{line}").and_then(|_| stdin.flush());
        }
    }

    /// Closes the pipe, as the end of this process would, and waits for the watchdog
    /// (which signals whatever is still registered).
    pub fn stop(&self) {
        let taken = self.state.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some((mut child, stdin)) = taken {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, Instant};

    fn alive(pid: i32) -> bool {
        // SAFETY: kill(2) with signal 0 only checks that the process exists.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    fn wait_gone(child: &mut Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn closing_the_pipe_kills_what_is_registered_and_only_that() {
        let reaper = Reaper::start().unwrap();
        // A group whose leader has a child: both must go.
        let mut group = Command::new("/bin/sh")
            .arg("-c")
            .arg("sleep 60 & wait")
            .process_group(0)
            .spawn()
            .unwrap();
        let mut service = Command::new("sleep").arg("60").spawn().unwrap();
        let mut forgotten = Command::new("sleep").arg("60").spawn().unwrap();
        let pgid = group.id() as i32;
        reaper.watch_group(pgid);
        reaper.watch_service(service.id() as i32);
        reaper.watch_service(forgotten.id() as i32);
        reaper.forget_service(forgotten.id() as i32);
        reaper.stop();
        assert!(wait_gone(&mut group), "the group leader was not killed");
        assert!(wait_gone(&mut service), "the service was not stopped");
        // The leader's child is in the same group: nothing of the group is left once
        // init has reaped it.
        let deadline = Instant::now() + Duration::from_secs(10);
        // SAFETY: kill(2) with signal 0 on a process group only checks it exists.
        while unsafe { libc::kill(-pgid, 0) } == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_ne!(
            unsafe { libc::kill(-pgid, 0) },
            0,
            "a process of the group is left"
        );
        assert!(
            alive(forgotten.id() as i32),
            "a forgotten process was killed"
        );
        forgotten.kill().unwrap();
        forgotten.wait().unwrap();
    }
}
