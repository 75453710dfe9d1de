# $1: 0 when the package is erased (not upgraded).
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl disable --now oxibot.target oxibot-broker.service oxibot-toold.service oxibot-egressd.service 'oxibot-channeld@*.service' \
        oxibot-ctl.socket oxibot-channel.socket oxibot-tool.socket oxibot-egress.socket oxibot-egress-door.socket >/dev/null 2>&1 || true
fi
