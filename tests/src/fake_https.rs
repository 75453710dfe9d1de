//! An HTTPS API on the host's loopback for the egress door's tests, with
//! a test authority of its own (made with `openssl`, served by Python's
//! `http.server`): what a host with a credential set at the door looks
//! like from outside the jail.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// A server process of a test, stopped when the test ends, passed or not
/// (a failed assertion must not leave it running).
pub struct Server(pub std::process::Child);

impl Server {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An HTTPS API on the host's loopback whose certificate a test authority
/// signed (for 127.0.0.1): it echoes the Authorization header it got, in a
/// header and in the body, plainly (`/plain`), gzip-compressed (`/gzip`),
/// chunked (`/chunked`), or sends a redirect to `/redirect?to=URL`; and
/// notes each path with the header in `seen.log`. Returns the port and the
/// authority's certificate.
pub fn echoing_https_api(dir: &Path) -> Option<(u16, std::path::PathBuf, Server)> {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .ok()?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Some(())
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-days",
            "1",
            "-subj",
            "/CN=OxiBot test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    ]
    .concat())?;
    run(&[
        &["req"][..],
        &ec,
        &["-subj", "/CN=api.test", "-keyout", "leaf.key", "-out", "leaf.csr"],
    ]
    .concat())?;
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "leaf.pem",
    ])?;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let script = format!(
        r#"import gzip, http.server, ssl, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        auth = self.headers.get('Authorization', 'none')
        with open('{seen}', 'a') as f:
            f.write(self.path + ' ' + auth + '\n')
        url = urllib.parse.urlparse(self.path)
        if url.path == '/redirect':
            self.send_response(302)
            self.send_header('Location', urllib.parse.parse_qs(url.query)['to'][0])
            self.send_header('Content-Length', '0')
            self.end_headers()
            return
        body = ('{{"you_sent": "' + auth + '"}}').encode()
        self.send_response(200)
        self.send_header('X-Echo', auth)
        if url.path == '/gzip':
            body = gzip.compress(body)
            self.send_header('Content-Encoding', 'gzip')
        if url.path == '/chunked':
            self.send_header('Transfer-Encoding', 'chunked')
            self.end_headers()
            for i in range(0, len(body), 5):
                piece = body[i:i + 5]
                self.wfile.write(b'%x\r\n' % len(piece) + piece + b'\r\n')
            self.wfile.write(b'0\r\nX-Trailer: ' + auth.encode() + b'\r\n\r\n')
            return
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
s = http.server.ThreadingHTTPServer(('127.0.0.1', {port}), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain('{leaf}', '{key}')
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
"#,
        seen = dir.join("seen.log").display(),
        leaf = dir.join("leaf.pem").display(),
        key = dir.join("leaf.key").display(),
    );
    let child = Server(
        std::process::Command::new("/usr/bin/python3")
            .arg("-c")
            .arg(script)
            .spawn()
            .ok()?,
    );
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some((port, dir.join("ca.pem"), child));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
