# $1: 0 when the package is erased (not upgraded).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now oxibot.target oxibot-broker.service oxibot-toold.service 'oxibot-channeld@*.service' \
        oxibot-ctl.socket oxibot-channel.socket oxibot-tool.socket >/dev/null 2>&1 || true
fi
