"""The tests' settings: the project's own in development mode (DJANGO_DEBUG=1: the built-in secret key, plain
HTTP for the test client and the live server), whatever the shell exports.

pytest-django still runs every test with ``DEBUG = False``, as in production (error pages, no query log).
The production settings themselves are checked in subprocesses by tests/test_settings.py.
"""

import os

os.environ["DJANGO_DEBUG"] = "1"

from stoflow.settings import *  # noqa: E402, F403

# pytest-django turns DEBUG off for each test, after these settings are read: WhiteNoise would then serve only
# STATIC_ROOT, which the tests do not fill (and warn, for each client, that it is missing). They serve the apps'
# own files, as development does; tests/test_web_settings.py collects and serves them as production does.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
