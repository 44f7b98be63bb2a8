"""
Command-line tools that ship with vpnkit.
"""
