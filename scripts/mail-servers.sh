#!/usr/bin/env bash
# Starts the real mail servers the e-mail channel tests use, on 127.0.0.1:
#   Dovecot IMAP on port 10143 (users: any name, password "imap-PASS-0xb0t-t3st"),
#   OpenSMTPD on port 10025, delivering every recipient to Dovecot over LMTP.
# Needs root and Debian's dovecot-imapd, dovecot-lmtpd and opensmtpd (the
# test script installs them). Idempotent: running servers are left alone,
# or reloaded when this script's configuration changed.
set -euo pipefail
MAIL=/var/tmp/oxibot-test-mail
IMAP_PORT=10143
SMTP_PORT=10025

up() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
mkdir -p "$MAIL/run" "$MAIL/state" "$MAIL/home"
chown dovecot:dovecot "$MAIL/home"
printf '' > "$MAIL/passwd"

cat > "$MAIL/dovecot.conf.new" <<CONF
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
dovecot_changed=0
if ! cmp -s "$MAIL/dovecot.conf.new" "$MAIL/dovecot.conf"; then
    mv "$MAIL/dovecot.conf.new" "$MAIL/dovecot.conf"
    dovecot_changed=1
else
    rm -f "$MAIL/dovecot.conf.new"
fi

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
    if up $IMAP_PORT && up $SMTP_PORT; then
        echo "mail servers up: IMAP 127.0.0.1:$IMAP_PORT, SMTP 127.0.0.1:$SMTP_PORT"
        exit 0
    fi
    sleep 0.1
done
echo "the mail servers did not come up; see $MAIL/dovecot.log and: smtpd -n -f $MAIL/smtpd.conf" >&2
exit 1
