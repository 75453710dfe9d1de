# $1: 1 on a first install, 2 or more on an upgrade.
systemd-sysusers oxibot.conf
systemd-tmpfiles --create oxibot.conf
chgrp oxibot /etc/oxibot/config.json
chmod 0640 /etc/oxibot/config.json
if [ ! -e /etc/oxibot/secrets.json ]; then
    (umask 077 && printf '{}\n' > /etc/oxibot/secrets.json)
    chown root:oxibot /etc/oxibot/secrets.json
    chmod 0640 /etc/oxibot/secrets.json
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if [ "$1" -ge 2 ]; then
        systemctl try-restart oxibot-broker.service oxibot-toold.service oxibot-egressd.service 'oxibot-channeld@*.service' || true
    fi
fi
