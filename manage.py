#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stoflow.settings")
    from django.core.management import execute_from_command_line

    from stoflow.env import SettingsError

    try:
        execute_from_command_line(sys.argv)
    except SettingsError as exc:  # the environment cannot make the settings: say which variable, not a traceback
        sys.exit(f"Error in the settings: {exc}")


if __name__ == "__main__":
    main()
