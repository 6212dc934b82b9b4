//! Starting a server binary and reading the stdout line that says where it listens (every
//! server of this workspace prints one, first, once its socket is bound), and collecting a
//! child's output in the background so a chatty server never blocks on a full pipe.

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::Duration;

/// How long a server may take to print its listening line (generous: tests run in parallel
/// on a loaded machine, and a KMS fetching collateral from a PCCS starts slower).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A started server and the first line it printed on stdout (without the line break).
pub struct Listening {
    pub child: Child,
    pub line: String,
}

/// Spawns `cmd` with stdin closed and stdout piped (stderr as the caller set it up) and waits
/// up to `timeout` for its first stdout line; the rest of stdout is drained in the background.
/// If no line comes (the process exited or hung), the process is killed and reaped and the
/// error says so, with the process's stderr if it was piped.
pub fn spawn_listening(cmd: &mut Command, timeout: Duration) -> Result<Listening, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining so a stray print can never block the server.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    let what = match rx.recv_timeout(timeout) {
        Ok(line) if !line.is_empty() => {
            return Ok(Listening {
                child,
                line: line.trim_end().to_owned(),
            });
        }
        Ok(_) => "it exited without printing a line on stdout".to_owned(),
        Err(_) => format!("it printed no line on stdout within {timeout:?}"),
    };
    let _ = child.kill();
    let _ = child.wait();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
        return Err(format!("{what}; stderr:\n{stderr}"));
    }
    Err(what)
}

/// The address after `marker` in a listening line (`"... listening on 127.0.0.1:4433"`).
pub fn addr_after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.split_once(marker).map(|(_, addr)| addr.trim())
}

/// Reads `stream` to its end on a thread of its own; the text so far is in the returned cell.
pub fn collect(stream: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn the_first_stdout_line_is_returned_and_the_server_keeps_running() {
        let mut cmd = sh("echo 'x listening on 127.0.0.1:4433'; echo more; sleep 30");
        let mut started = spawn_listening(&mut cmd, STARTUP_TIMEOUT).unwrap();
        assert_eq!(started.line, "x listening on 127.0.0.1:4433");
        assert_eq!(
            addr_after(&started.line, "listening on "),
            Some("127.0.0.1:4433")
        );
        assert!(started.child.try_wait().unwrap().is_none());
        let _ = started.child.kill();
        let _ = started.child.wait();
    }

    #[test]
    fn a_server_that_exits_silently_is_reported_with_its_stderr() {
        let mut cmd = sh("echo 'bad config: port' >&2; exit 3");
        cmd.stderr(Stdio::piped());
        let err = spawn_listening(&mut cmd, STARTUP_TIMEOUT).err().unwrap();
        assert!(err.contains("exited without printing"), "{err}");
        assert!(err.contains("bad config: port"), "{err}");
    }

    #[test]
    fn a_server_that_hangs_silently_is_killed_after_the_timeout() {
        let mut cmd = sh("sleep 30");
        let t = std::time::Instant::now();
        let err = spawn_listening(&mut cmd, Duration::from_millis(200))
            .err()
            .unwrap();
        assert!(err.contains("no line on stdout within"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    }

    #[test]
    fn collect_gathers_everything_written() {
        let mut child = sh("printf 'a\\nb'").stdout(Stdio::piped()).spawn().unwrap();
        let text = collect(child.stdout.take().unwrap());
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while text.lock().unwrap().as_str() != "a\nb" && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(text.lock().unwrap().as_str(), "a\nb");
    }
}
