"""A module deeper in the plugin's package: its gettext is the plugin's too."""

from core.api import gettext as _


def receipt() -> str:
    return _("Receipt")
