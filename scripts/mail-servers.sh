#!/usr/bin/env bash
# Starts the real mail servers the e-mail channel tests use, on 127.0.0.1:
#   Dovecot IMAP on port 10143 (users: any name, password "oxibot-test"),
#   OpenSMTPD on port 10025, delivering every recipient to Dovecot over LMTP.
# Needs root and Debian's dovecot-imapd, dovecot-lmtpd and opensmtpd (the
# test script installs them). Idempotent: running servers are left alone.
set -euo pipefail
MAIL=/var/tmp/oxibot-test-mail
IMAP_PORT=10143
SMTP_PORT=10025

if (exec 3<>/dev/tcp/127.0.0.1/$IMAP_PORT) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT) 2>/dev/null; then
    echo "mail servers already running"
    exit 0
fi
mkdir -p "$MAIL/run" "$MAIL/state" "$MAIL/home"
chown dovecot:dovecot "$MAIL/home"
printf '' > "$MAIL/passwd"

cat > "$MAIL/dovecot.conf" <<CONF
protocols = imap lmtp
listen = 127.0.0.1
base_dir = $MAIL/run
state_dir = $MAIL/state
log_path = $MAIL/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~/Maildir
passdb {
  driver = static
  args = password=oxibot-test
}
userdb {
  driver = static
  args = uid=dovecot gid=dovecot home=$MAIL/home/%n allow_all_users=yes
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $IMAP_PORT
  }
}
service lmtp {
  unix_listener lmtp {
    mode = 0666
  }
}
protocol lmtp {
  auth_username_format = %n
}
CONF

# Every recipient, any domain, goes to Dovecot's mailbox of its local part:
# nothing ever leaves this machine.
cat > "$MAIL/smtpd.conf" <<CONF
table catchall { "@" = "dovecot" }
listen on 127.0.0.1 port $SMTP_PORT
action "to_dovecot" lmtp "$MAIL/run/lmtp" rcpt-to virtual <catchall>
match from any for any action "to_dovecot"
match from local for any action "to_dovecot"
CONF
chmod 600 "$MAIL/smtpd.conf"

if ! (exec 3<>/dev/tcp/127.0.0.1/$IMAP_PORT) 2>/dev/null; then
    # Ours runs with its own base_dir, beside any system Dovecot.
    dovecot -c "$MAIL/dovecot.conf"
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT) 2>/dev/null; then
    # OpenSMTPD's queue and control socket are fixed paths: only one can
    # run. A system instance (started by the package) gives way to ours.
    if pgrep -x smtpd >/dev/null; then
        echo "stopping the running OpenSMTPD so that the test instance can use the queue"
        smtpctl stop >/dev/null 2>&1 || pkill -x smtpd || true
        sleep 1
    fi
    smtpd -n -f "$MAIL/smtpd.conf" >/dev/null
    smtpd -f "$MAIL/smtpd.conf"
fi
for _ in $(seq 1 50); do
    if (exec 3<>/dev/tcp/127.0.0.1/$IMAP_PORT) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/$SMTP_PORT) 2>/dev/null; then
        echo "mail servers up: IMAP 127.0.0.1:$IMAP_PORT, SMTP 127.0.0.1:$SMTP_PORT"
        exit 0
    fi
    sleep 0.1
done
echo "the mail servers did not come up; see $MAIL/dovecot.log and: smtpd -n -f $MAIL/smtpd.conf" >&2
exit 1
