from twisted.application.service import ServiceMaker

vpnkit = ServiceMaker(
    "vpnkit", "vpnkit.tap", "A user-mode network stack for VMs and network namespaces.", "vpnkit"
)
