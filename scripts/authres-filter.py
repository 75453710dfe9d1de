#!/usr/bin/python3
"""The test mail server's own authentication step, as an OpenSMTPD filter.

A real receiving server checks DKIM/SPF/DMARC and *prepends* one
Authentication-Results header carrying its own authserv-id (RFC 8601).
This filter plays that part for the e-mail tests, so that they never write
the trusted header themselves:

  authres-filter.py pass    -> "mail.oxibot.test; dkim=pass header.d=<envelope sender's domain>"
                              (as if the sending domain's DKIM signature verified)
  authres-filter.py none    -> "mail.oxibot.test; dkim=none"

The header goes above everything the sender wrote, so a sender-written
header (with any authserv-id) always sits below it.

Protocol: OpenSMTPD's filter protocol (0.5 and later), lines on
stdin/stdout: we register for the mail-from phase (to learn the envelope
sender) and for data lines (to prepend the header).
"""

import sys

AUTHSERV_ID = "mail.oxibot.test"


def send(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def main():
    verdict = sys.argv[1] if len(sys.argv) > 1 else "none"
    for line in sys.stdin:
        if line.rstrip("\n") == "config|ready":
            break
    send("register|filter|smtp-in|mail-from")
    send("register|filter|smtp-in|data-line")
    send("register|ready")

    domains = {}  # session -> envelope sender's domain
    stamped = set()  # sessions whose current message got its header
    for raw in sys.stdin:
        fields = raw.rstrip("\n").split("|", 7)
        if len(fields) < 7 or fields[0] != "filter":
            continue
        phase, session, token = fields[4], fields[5], fields[6]
        rest = fields[7] if len(fields) > 7 else ""
        if phase == "mail-from":
            address = rest.strip("<>")
            domains[session] = address.rpartition("@")[2].lower()
            stamped.discard(session)
            send(f"filter-result|{session}|{token}|proceed")
        elif phase == "data-line":
            if session not in stamped:
                stamped.add(session)
                if verdict == "pass":
                    result = f"dkim=pass header.d={domains.get(session, '')}"
                else:
                    result = "dkim=none"
                send(f"filter-dataline|{session}|{token}|Authentication-Results: {AUTHSERV_ID}; {result}")
            send(f"filter-dataline|{session}|{token}|{rest}")
            if rest == ".":
                stamped.discard(session)


if __name__ == "__main__":
    main()
