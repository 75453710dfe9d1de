#!/usr/bin/env bash
# Starts the real mail servers the e-mail channel tests use, on 127.0.0.1:
#   Dovecot IMAP on port 10143 (users: any name, password "imap-PASS-0xb0t-t3st"),
#   OpenSMTPD on port 10025, delivering every recipient to Dovecot over LMTP,
#   and on port 10026, where it also vouches for the sender: the receiving
#   server's own Authentication-Results header (authserv-id
#   mail.oxibot.test) says dkim=pass for the envelope sender's domain on
#   10026 and dkim=none on 10025 (scripts/authres-filter.py; a sender can
#   write such a header too, but never above the server's own);
#   and TLS with a certificate from a private test CA ($MAIL/tls/ca.pem):
#   IMAPS on 10993, and Dovecot's submission service (AUTH required, relaying
#   to OpenSMTPD) with STARTTLS on 10587 and TLS on 10465. (Debian's
#   OpenSMTPD 6.8 cannot serve TLS with OpenSSL 3, hence Dovecot for these.)
# Needs root and Debian's dovecot-imapd, dovecot-lmtpd and opensmtpd (the
# test script installs them). Idempotent: running servers are left alone,
# or reloaded when this script's configuration changed.
set -euo pipefail
MAIL=/var/tmp/oxibot-test-mail
IMAP_PORT=10143
SMTP_PORT=10025
SIGNED_SMTP_PORT=10026

up() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
mkdir -p "$MAIL/run" "$MAIL/state" "$MAIL/home" "$MAIL/tls"

# A private CA and a server certificate for 127.0.0.1, made once.
if [ ! -s "$MAIL/tls/cert.pem" ]; then
    (
        cd "$MAIL/tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=OxiBot test CA" \
            -keyout ca.key -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout key.pem -out req.pem 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > ext.cnf
        openssl x509 -req -in req.pem -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 \
            -extfile ext.cnf -out cert.pem 2>/dev/null
        chmod 600 ca.key key.pem
        chmod 644 ca.pem cert.pem
    )
fi
chmod 755 "$MAIL" "$MAIL/tls"
chown dovecot:dovecot "$MAIL/home"
printf '' > "$MAIL/passwd"

cat > "$MAIL/dovecot.conf.new" <<CONF
protocols = imap lmtp submission
listen = 127.0.0.1
base_dir = $MAIL/run
state_dir = $MAIL/state
log_path = $MAIL/dovecot.log
ssl = yes
ssl_cert = <$MAIL/tls/cert.pem
ssl_key = <$MAIL/tls/key.pem
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:~/Maildir
passdb {
  driver = static
  args = password=imap-PASS-0xb0t-t3st
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
  inet_listener imaps {
    address = 127.0.0.1
    port = 10993
    ssl = yes
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
hostname = mail.oxibot.test
submission_relay_host = 127.0.0.1
submission_relay_port = $SMTP_PORT
service submission-login {
  inet_listener submission {
    address = 127.0.0.1
    port = 10587
  }
  inet_listener submissions {
    address = 127.0.0.1
    port = 10465
    ssl = yes
  }
}
CONF
dovecot_changed=0
if ! cmp -s "$MAIL/dovecot.conf.new" "$MAIL/dovecot.conf"; then
    mv "$MAIL/dovecot.conf.new" "$MAIL/dovecot.conf"
    dovecot_changed=1
else
    rm -f "$MAIL/dovecot.conf.new"
fi

# Every recipient, any domain, goes to Dovecot's mailbox of its local part:
# nothing ever leaves this machine.
install -m 755 "$(dirname "$0")/authres-filter.py" "$MAIL/authres-filter.py"
cat > "$MAIL/smtpd.conf.new" <<CONF
table catchall { "@" = "dovecot" }
filter "authres-none" proc-exec "/usr/bin/python3 $MAIL/authres-filter.py none"
filter "authres-pass" proc-exec "/usr/bin/python3 $MAIL/authres-filter.py pass"
listen on 127.0.0.1 port $SMTP_PORT filter "authres-none"
listen on 127.0.0.1 port $SIGNED_SMTP_PORT filter "authres-pass"
action "to_dovecot" lmtp "$MAIL/run/lmtp" rcpt-to virtual <catchall>
match from any for any action "to_dovecot"
match from local for any action "to_dovecot"
CONF
chmod 600 "$MAIL/smtpd.conf.new"
if ! cmp -s "$MAIL/smtpd.conf.new" "$MAIL/smtpd.conf"; then
    mv "$MAIL/smtpd.conf.new" "$MAIL/smtpd.conf"
    if up $SMTP_PORT; then
        echo "restarting OpenSMTPD with the new test configuration"
        smtpctl stop >/dev/null 2>&1 || pkill -x smtpd || true
        for _ in $(seq 1 50); do up $SMTP_PORT || break; sleep 0.1; done
    fi
else
    rm -f "$MAIL/smtpd.conf.new"
fi

if ! up $IMAP_PORT; then
    # Ours runs with its own base_dir, beside any system Dovecot.
    dovecot -c "$MAIL/dovecot.conf"
elif [ "$dovecot_changed" = 1 ]; then
    echo "reloading Dovecot with the new test configuration"
    dovecot -c "$MAIL/dovecot.conf" reload
    sleep 0.5
fi
if ! up $SMTP_PORT; then
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
    if up $IMAP_PORT && up $SMTP_PORT && up $SIGNED_SMTP_PORT && up 10993 && up 10587 && up 10465; then
        echo "mail servers up: IMAP 127.0.0.1:$IMAP_PORT, SMTP 127.0.0.1:$SMTP_PORT (and $SIGNED_SMTP_PORT, vouching)"
        exit 0
    fi
    sleep 0.1
done
echo "the mail servers did not come up; see $MAIL/dovecot.log and: smtpd -n -f $MAIL/smtpd.conf" >&2
exit 1
