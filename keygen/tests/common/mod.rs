//! Runs the real `breakglass-keygen` binary in a temporary directory, standard input
//! always a pipe (so the binary never prompts on a terminal: it reads passphrases, words
//! and shares from that pipe), and checks its exit code and error line.

#![allow(
    dead_code,
    reason = "each test file uses its own part of these helpers"
)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How every error of the binary starts (clap's usage errors excepted).
pub const ERROR_PREFIX: &str = "breakglass-keygen: error:";

/// Runs the binary with a umask of 0: `$0` is the program, the rest its arguments.
const UMASK_ZERO: &str = "umask 000; exec \"$0\" \"$@\"";

/// What one run of the binary did.
#[derive(Debug)]
pub struct Run {
    /// The exit code (`-1` when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Asserts that the run failed with `code` and that standard error says each of
    /// `phrases`; for exit code 1, also that it starts with [`ERROR_PREFIX`].
    pub fn assert_fails(&self, code: i32, phrases: &[&str]) -> &Self {
        assert_eq!(self.code, code, "exit code; {self:#?}");
        if code == 1 {
            assert!(self.stderr.starts_with(ERROR_PREFIX), "{self:#?}");
        }
        for phrase in phrases {
            assert!(
                self.stderr.contains(phrase),
                "stderr lacks {phrase:?}; {self:#?}"
            );
        }
        self
    }
}

/// A temporary directory to run the binary in.
pub struct Workdir {
    dir: tempfile::TempDir,
}

impl Workdir {
    /// A fresh empty directory.
    pub fn new() -> Self {
        Workdir {
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The path of `name` in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the binary with `args`, feeding `stdin` through a pipe.
    pub fn run(&self, args: &[&str], stdin: &str) -> Run {
        let mut command = Command::new(env!("CARGO_BIN_EXE_breakglass-keygen"));
        command.args(args);
        self.spawn(command, stdin)
    }

    /// As [`Workdir::run`], with a umask of 0 so that only the binary decides modes.
    pub fn run_with_umask_zero(&self, args: &[&str], stdin: &str) -> Run {
        let mut command = Command::new("sh");
        command
            .args(["-c", UMASK_ZERO, env!("CARGO_BIN_EXE_breakglass-keygen")])
            .args(args);
        self.spawn(command, stdin)
    }

    /// Runs any program with a umask of 0, to check that the wrapper itself works.
    pub fn run_other_with_umask_zero(&self, program: &str, args: &[&str]) -> Run {
        let mut command = Command::new("sh");
        command.args(["-c", UMASK_ZERO, program]).args(args);
        self.spawn(command, "")
    }

    fn spawn(&self, mut command: Command, stdin: &str) -> Run {
        let mut child = command
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = stdin.to_owned();
        // A writer thread, so a large input cannot deadlock against a full stdout pipe;
        // a command that never reads its input closes the pipe, which is not an error.
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
        let output = child.wait_with_output().expect("the binary runs");
        writer.join().expect("the writer thread finishes");
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Runs the binary, asserts success and returns standard output.
    pub fn ok(&self, args: &[&str], stdin: &str) -> String {
        let run = self.run(args, stdin);
        assert_eq!(run.code, 0, "`{}` failed; {run:#?}", args.join(" "));
        run.stdout
    }

    /// Runs the binary, asserts that it failed with `code` and said each of `phrases`.
    pub fn fails(&self, args: &[&str], stdin: &str, code: i32, phrases: &[&str]) -> Run {
        let run = self.run(args, stdin);
        run.assert_fails(code, phrases);
        run
    }

    /// Makes a root, relay or member key (`kind`) in `file`; returns its public string.
    pub fn new_key(&self, kind: &str, file: &str) -> String {
        let args: Vec<&str> = match kind {
            "member" => vec!["member", "new", "--name", "someone", "--out", file],
            _ => vec![kind, "new", "--out", file],
        };
        one_line(&self.ok(&args, ""))
    }

    /// The public key string of a plain key file, as `pubkey` prints it.
    pub fn pubkey(&self, file: &str) -> String {
        one_line(&self.ok(&["pubkey", file], ""))
    }

    /// The bytes of `name`.
    pub fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.path(name)).expect("the file exists")
    }

    /// The text of `name`.
    pub fn read_text(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).expect("the file exists and is UTF-8")
    }

    /// Writes `contents` to `name` with mode 0600.
    pub fn write_key_text(&self, name: &str, contents: &str) {
        let path = self.path(name);
        fs::write(&path, contents).expect("writes");
        set_mode(&path, 0o600);
    }

    /// Whether `name` exists.
    pub fn exists(&self, name: &str) -> bool {
        self.path(name).symlink_metadata().is_ok()
    }

    /// The names in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.path())
            .expect("lists the directory")
            .map(|e| {
                e.expect("an entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }
}

/// The permission bits of `path`.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .expect("the file exists")
        .permissions()
        .mode()
        & 0o777
}

/// Sets the permission bits of `path`.
pub fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The only line of `text`, which must be exactly one line.
pub fn one_line(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {text:?}");
    lines[0].to_owned()
}

/// The value of the `fingerprint: …` line in `text`.
pub fn fingerprint_in(text: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix("fingerprint: "))
        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
        .expect("a fingerprint line")
}
