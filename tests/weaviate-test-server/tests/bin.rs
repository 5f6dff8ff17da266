//! The `weaviate-test-server` binary that benchmark scripts start as a process.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

#[test]
fn binary_serves_until_killed() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weaviate-test-server"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start weaviate-test-server");
    let stdout = child.stdout.take().expect("stdout");
    // The first line is printed once the listener is bound: no waiting needed.
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the listening line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_owned();

    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .write_all(b"GET /v1/meta HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    child.kill().expect("kill");
    child.wait().expect("reap");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"version\":\"1.39.0\""), "{answer}");
}
