"""
Tests for the C{twistd vpnkit} plugin in C{twisted/plugins/vpnkit_plugin.py}.
"""

import ast
import importlib.util
import os

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin, getPlugins
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from vpnkit import tap

PLUGIN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "twisted", "plugins", "vpnkit_plugin.py")


def loadCheckoutPlugin():
    """
    Import the checkout's plugin file itself (an installed copy may come
    first on C{twisted.plugins.__path__}).
    """
    spec = importlib.util.spec_from_file_location("_vpnkit_plugin_under_test", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PluginTests(SynchronousTestCase):
    """
    twistd finds vpnkit as a service maker named C{vpnkit}.
    """

    def vpnkitPlugins(self):
        return [p for p in getPlugins(IServiceMaker) if p.tapname == "vpnkit"]

    def test_found(self):
        """
        L{getPlugins} finds a service maker with tapname C{vpnkit} whose
        module is L{vpnkit.tap}.
        """
        plugins = self.vpnkitPlugins()
        self.assertTrue(plugins, "no vpnkit plugin found on twisted.plugins")
        for plugin in plugins:
            self.assertEqual(plugin.module, "vpnkit.tap")
            self.assertTrue(verifyObject(IServiceMaker, plugin))
            self.assertTrue(IPlugin.providedBy(plugin))

    def test_optionsAndMakeService(self):
        """
        The plugin's C{options} and C{makeService} are those of L{vpnkit.tap}.
        """
        plugin = self.vpnkitPlugins()[0]
        self.assertIs(plugin.options, tap.Options)
        self.assertIs(plugin.makeService, tap.makeService)
        self.assertTrue(plugin.description)

    def test_checkoutPlugin(self):
        """
        The checkout's plugin file defines the same service maker.
        """
        maker = loadCheckoutPlugin().vpnkit
        self.assertEqual((maker.name, maker.module, maker.tapname), ("vpnkit", "vpnkit.tap", "vpnkit"))
        self.assertTrue(verifyObject(IServiceMaker, maker))

    def test_lightweight(self):
        """
        The plugin module imports nothing but L{twisted.application.service}
        (twistd imports every plugin to list them), and the plugin directory
        has no C{__init__.py} (which would hide Twisted's own plugins).
        """
        with open(PLUGIN) as f:
            tree = ast.parse(f.read())
        imported = [
            node.module if isinstance(node, ast.ImportFrom) else alias.name
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for alias in node.names
        ]
        self.assertEqual(imported, ["twisted.application.service"])
        self.assertFalse(os.path.exists(os.path.join(os.path.dirname(PLUGIN), "__init__.py")))


class PackagingTests(SynchronousTestCase):
    """
    The installed package is complete.
    """

    def test_everyPackageListed(self):
        """
        Every directory of C{vpnkit} with an C{__init__.py} is listed in
        setup.cfg's C{packages}, so a non-editable install carries it.
        """
        import configparser
        import os

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        parser = configparser.ConfigParser()
        parser.read(os.path.join(root, "setup.cfg"))
        listed = set(parser["options"]["packages"].split())
        found = set()
        for directory, _, files in os.walk(os.path.join(root, "vpnkit")):
            if "__init__.py" in files:
                found.add(os.path.relpath(directory, root).replace(os.sep, "."))
        self.assertEqual(found - listed, set())
        self.assertIn("twisted.plugins", listed)
