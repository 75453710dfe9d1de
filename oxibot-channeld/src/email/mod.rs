//! E-mail: IMAP (async-imap) to receive, SMTP (lettre) to reply.
//!
//! A message is marked `\Seen` only after the broker committed it, so a
//! crash in between redelivers it. Senders are verified (see
//! [`auth::verified`]): unless `trustFromHeader` is set, the From address
//! counts only when the receiving server's own `Authentication-Results`
//! header — the topmost one with the configured `authservId` — says
//! dmarc=pass (or dkim=pass) for exactly the From address's domain;
//! otherwise the sender reaches the broker as `unverified:<address>`, which
//! no allow-list admits (and the refusal is audited there).

mod address;
mod auth;
mod parse;

use std::time::Duration;

use futures_util::StreamExt;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use crate::link::{Job, Link, Part};
use crate::Fatal;

/// Joins the Message-ID and the subject in the platform id, so that a
/// reply after a restart still has both.
const SEP: char = '\u{1f}';
/// Marks a sender (and conversation) the receiving server did not vouch for.
const UNVERIFIED: &str = "unverified:";
const MAX_ID: usize = 250;

use oxibot_proto::settings::EmailSettings as Settings;

use oxibot_proto::settings::EmailCredential as Credential;

/// [`crate::fuzzing::email`]: a mail read with default settings and the
/// authserv-id "mx".
pub(crate) fn read_for_fuzzing(raw: &[u8]) -> Option<oxibot_proto::messages::ChannelToBroker> {
    let settings = Settings {
        authserv_id: Some("mx".into()),
        ..Settings::default()
    };
    parse::to_inbound(raw, &settings, 1).map(|(inbound, _)| inbound)
}

enum Ended {
    Reconnect(String),
    Fatal(Fatal),
}

pub async fn run(link: Link, jobs: mpsc::Receiver<Job>, settings: &str, credential: &str) -> Result<(), Fatal> {
    let s: Settings = serde_json::from_str(settings).map_err(|e| Fatal::config(format!("channels.email: {e}")))?;
    let c: Credential = serde_json::from_str(credential).unwrap_or_default();
    for (key, value) in [
        ("imapHost", &s.imap_host),
        ("smtpHost", &s.smtp_host),
        ("fromAddress", &s.from_address),
    ] {
        if value.is_empty() {
            return Err(Fatal::config(format!("channels.email.{key} is not set")));
        }
    }
    let from: lettre::message::Mailbox = s
        .from_address
        .parse()
        .map_err(|e| Fatal::config(format!("channels.email.fromAddress: {e}")))?;
    let extra_roots = extra_roots(&s)?;
    let transport = smtp_transport(&s, &c, &extra_roots)?;
    tokio::spawn(outbound(transport, from, s.subject_prefix.clone(), link.clone(), jobs));

    let mut backoff = Duration::from_secs(1);
    loop {
        let ended = if s.imap_use_ssl {
            match connect_tls(&s, &extra_roots).await {
                Ok(stream) => imap_session(stream, &s, &c, &link).await,
                Err(e) => Ended::Reconnect(e.to_string()),
            }
        } else {
            match tokio::net::TcpStream::connect((s.imap_host.as_str(), s.imap_port)).await {
                Ok(stream) => imap_session(stream, &s, &c, &link).await,
                Err(e) => Ended::Reconnect(format!("cannot reach IMAP {}:{}: {e}", s.imap_host, s.imap_port)),
            }
        };
        match ended {
            Ended::Fatal(f) => return Err(f),
            Ended::Reconnect(why) => {
                tracing::warn!("IMAP: {why}; reconnecting in {backoff:?}");
                link.status(false, Some(why)).await;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// The certificates of `tlsCaFile`, as PEM text and as DER.
struct ExtraRoots {
    pem: Vec<u8>,
    der: Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
}

fn extra_roots(s: &Settings) -> Result<ExtraRoots, Fatal> {
    use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
    let Some(path) = s.tls_ca_file.as_deref().filter(|p| !p.is_empty()) else {
        return Ok(ExtraRoots {
            pem: Vec::new(),
            der: Vec::new(),
        });
    };
    let bad = |why: String| Fatal::config(format!("channels.email.tlsCaFile {path}: {why}"));
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let der = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not PEM certificates ({e})")))?;
    if der.is_empty() {
        return Err(bad("holds no certificate".into()));
    }
    Ok(ExtraRoots { pem, der })
}

fn smtp_transport(
    s: &Settings,
    c: &Credential,
    roots: &ExtraRoots,
) -> Result<AsyncSmtpTransport<Tokio1Executor>, Fatal> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let err = |e: lettre::transport::smtp::Error| Fatal::config(format!("channels.email SMTP settings: {e}"));
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.smtp_host);
    if s.smtp_use_ssl || s.smtp_use_tls {
        let mut params = TlsParameters::builder(s.smtp_host.clone());
        if !roots.pem.is_empty() {
            params = params.add_root_certificate(Certificate::from_pem(&roots.pem).map_err(err)?);
        }
        let params = params.build_rustls().map_err(err)?;
        // smtpUseSsl: TLS from the first byte (465); smtpUseTls: STARTTLS, required.
        builder = builder.tls(if s.smtp_use_ssl {
            Tls::Wrapper(params)
        } else {
            Tls::Required(params)
        });
    }
    let mut builder = builder.port(s.smtp_port).timeout(Some(Duration::from_secs(30)));
    if !s.smtp_username.is_empty() {
        builder = builder.credentials(Credentials::new(s.smtp_username.clone(), c.smtp_password.clone()));
    }
    Ok(builder.build())
}

/// Why the IMAP connection could not be had or kept (the daemon says so in
/// its status and reconnects).
#[derive(Debug, thiserror::Error)]
enum ImapError {
    #[error("channels.email.tlsCaFile: {0}")]
    CaFile(tokio_rustls::rustls::Error),
    #[error("TLS set-up: {0}")]
    TlsConfig(tokio_rustls::rustls::Error),
    #[error("cannot reach IMAP {host}:{port}: {source}")]
    Reach {
        host: String,
        port: u16,
        source: std::io::Error,
    },
    #[error("channels.email.imapHost: {0}")]
    HostName(tokio_rustls::rustls::pki_types::InvalidDnsNameError),
    #[error("TLS with {host}: {source}")]
    Tls { host: String, source: std::io::Error },
    #[error("IDLE failed: {0}")]
    Idle(async_imap::error::Error),
    #[error("the IMAP connection dropped during IDLE: {0}")]
    IdleDropped(async_imap::error::Error),
    #[error("leaving IDLE failed: {0}")]
    IdleDone(async_imap::error::Error),
}

async fn connect_tls(
    s: &Settings,
    extra: &ExtraRoots,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ImapError> {
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in &extra.der {
        roots.add(cert.clone()).map_err(ImapError::CaFile)?;
    }
    let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ImapError::TlsConfig)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect((s.imap_host.as_str(), s.imap_port))
        .await
        .map_err(|source| ImapError::Reach {
            host: s.imap_host.clone(),
            port: s.imap_port,
            source,
        })?;
    let name =
        tokio_rustls::rustls::pki_types::ServerName::try_from(s.imap_host.clone()).map_err(ImapError::HostName)?;
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|source| ImapError::Tls {
            host: s.imap_host.clone(),
            source,
        })
}

async fn imap_session<T>(stream: T, s: &Settings, c: &Credential, link: &Link) -> Ended
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let mut client = async_imap::Client::new(stream);
    match client.read_response().await {
        Some(Ok(_)) => {}
        _ => return Ended::Reconnect("no IMAP greeting".into()),
    }
    let mut session = match client.login(&s.imap_username, &c.imap_password).await {
        Ok(session) => session,
        Err((e, _)) => {
            let msg = format!(
                "IMAP login as {} failed ({e}): check imapUsername and imapPassword",
                s.imap_username
            );
            link.status(false, Some(msg.clone())).await;
            return Ended::Fatal(Fatal::config(msg));
        }
    };
    if let Err(e) = session.select(&s.imap_mailbox).await {
        return Ended::Reconnect(format!("cannot open mailbox {}: {e}", s.imap_mailbox));
    }
    let idle = s.imap_idle
        && match session.capabilities().await {
            Ok(caps) => caps.has_str("IDLE"),
            Err(e) => return Ended::Reconnect(format!("CAPABILITY failed: {e}")),
        };
    if idle {
        tracing::info!("waiting for new mail in {} with IMAP IDLE", s.imap_mailbox);
    } else {
        tracing::info!("polling {} every {} s", s.imap_mailbox, s.poll_interval_seconds.max(1));
    }
    link.status(true, None).await;
    loop {
        let mut uids: Vec<u32> = match session.uid_search("UNSEEN").await {
            Ok(u) => u.into_iter().collect(),
            Err(e) => return Ended::Reconnect(format!("SEARCH failed: {e}")),
        };
        uids.sort_unstable();
        for uid in uids {
            let raw = {
                let mut fetched = match session.uid_fetch(uid.to_string(), "BODY.PEEK[]").await {
                    Ok(f) => f,
                    Err(e) => return Ended::Reconnect(format!("FETCH failed: {e}")),
                };
                let mut body = None;
                while let Some(item) = fetched.next().await {
                    if let Ok(f) = item {
                        if let Some(b) = f.body() {
                            body = Some(b.to_vec());
                        }
                    }
                }
                body
            };
            if let Some(raw) = raw {
                match parse::to_inbound(&raw, s, uid) {
                    Some((inbound, platform_id)) => {
                        if let Err(e) = link.deliver_inbound(inbound, &platform_id).await {
                            return Ended::Fatal(Fatal::from(e));
                        }
                    }
                    None => tracing::warn!(uid, "unreadable message skipped"),
                }
            }
            // Committed (or unreadable): now, and only now, mark it read.
            match session.uid_store(uid.to_string(), "+FLAGS (\\Seen)").await {
                Ok(mut updates) => while updates.next().await.is_some() {},
                Err(e) => return Ended::Reconnect(format!("STORE failed: {e}")),
            }
        }
        if idle {
            session = match wait_idle(session, Duration::from_secs(s.idle_renew_seconds.clamp(10, 29 * 60))).await {
                Ok(session) => session,
                Err(e) => return Ended::Reconnect(e.to_string()),
            };
        } else {
            tokio::time::sleep(Duration::from_secs(s.poll_interval_seconds.max(1))).await;
            if let Err(e) = session.noop().await {
                return Ended::Reconnect(format!("the IMAP connection dropped: {e}"));
            }
        }
    }
}

/// Waits in IDLE until the server reports a change to the mailbox or
/// `renew` passes, then leaves IDLE so the caller can search.
async fn wait_idle<T>(session: async_imap::Session<T>, renew: Duration) -> Result<async_imap::Session<T>, ImapError>
where
    T: AsyncRead + AsyncWrite + Unpin + std::fmt::Debug + Send,
{
    let mut handle = session.idle();
    handle.init().await.map_err(ImapError::Idle)?;
    let (wait, _interrupt) = handle.wait_with_timeout(renew);
    let outcome = wait.await;
    outcome.map_err(ImapError::IdleDropped)?;
    handle.done().await.map_err(ImapError::IdleDone)
}

async fn outbound(
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    prefix: String,
    link: Link,
    jobs: mpsc::Receiver<Job>,
) {
    let sender = move |part: Part| {
        let (transport, from, prefix) = (transport.clone(), from.clone(), prefix.clone());
        async move {
            send(
                &transport,
                from,
                &prefix,
                &part.chat_id,
                part.text,
                part.reply_to.as_deref(),
            )
            .await
        }
    };
    // A mail has no length limit: one reply, one message.
    let whole = |text: &str| vec![text.to_string()];
    crate::link::serve_jobs(
        link,
        jobs,
        whole,
        sender,
        |_: &str| None::<std::future::Ready<()>>,
        crate::link::NoDrafts,
    )
    .await
}

/// One reply, threaded under the message it answers.
async fn send(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
    prefix: &str,
    to: &str,
    text: String,
    reply_to: Option<&str>,
) -> Result<(), (String, bool)> {
    let (message_id, subject) = match reply_to.and_then(|r| r.split_once(SEP)) {
        Some((id, subj)) => (Some(id.to_string()), subj.to_string()),
        None => (None, "Message from your assistant".to_string()),
    };
    let subject = if subject
        .to_ascii_lowercase()
        .starts_with(&prefix.trim().to_ascii_lowercase())
    {
        subject
    } else {
        format!("{prefix}{subject}")
    };
    // An answer to an unverified sender goes to the address it named.
    let to = to.strip_prefix(UNVERIFIED).unwrap_or(to);
    let to: lettre::message::Mailbox = to.parse().map_err(|e| (format!("bad recipient {to}: {e}"), false))?;
    let mut b = Message::builder().from(from).to(to).subject(subject);
    if let Some(id) = &message_id {
        b = b.in_reply_to(id.clone()).references(id.clone());
    }
    let msg = b
        .header(ContentType::TEXT_PLAIN)
        .body(text)
        .map_err(|e| (e.to_string(), false))?;
    transport
        .send(msg)
        .await
        .map(|_| ())
        .map_err(|e| (e.to_string(), !e.is_permanent()))
}
