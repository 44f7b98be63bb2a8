# An example of embedding vpnkit in a Twisted application, run with
#
#     twistd -ny docs/vpnkit.tac
#
# It serves vmnet guests on $VPNKIT_ETHERNET (default /tmp/vpnkit.sock)
# next to whatever else the application runs.  The command-line parser
# checks the arguments exactly as `twistd vpnkit` does; stopping the
# application (SIGTERM, Ctrl-C) takes every guest off the switch and
# closes every host socket vpnkit opened.
import os

from twisted.application.service import Application

from vpnkit.tap import Options, makeService

options = Options()
options.parseOptions(
    [
        "--ethernet",
        os.environ.get("VPNKIT_ETHERNET", "/tmp/vpnkit.sock"),
        # Names and upstream servers of your own (see docs/dns.md).
        "--hosts",
        os.environ.get("VPNKIT_HOSTS", "/etc/hosts"),
    ]
)

application = Application("vpnkit")
makeService(options).setServiceParent(application)
