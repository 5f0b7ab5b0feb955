"""Profiles, precedence (flag > environment > profile file > default) and paths.

The constants below are the one place that knows URLs, paths and defaults; the emulator imports
them too. Keep this module's import light: `dasctl --help` loads it.
"""

from __future__ import annotations

# --- the local emulator (`dasctl serve`) and its documented demo client ----------------------
DEFAULT_EMULATOR_HOST = "127.0.0.1"
DEFAULT_EMULATOR_PORT = 7272
DEMO_CLIENT_ID = "dasctl-demo"
#: Public on purpose: it only opens the local emulator, and the built-in `local` profile uses it.
DEMO_CLIENT_SECRET = "dasctl-demo-secret"
DEMO_AUDIOHOOK_API_KEY = "dasctl-demo-audiohook-key"
DEMO_MODEL_HASH = "dasctl-emulator-model-v1"

# --- paths shared by the service and the emulator ---------------------------------------------
AUTH_PATH = "/socket.io/oauth2/token"
SOCKETIO_PATH = "socket.io"  # the Engine.IO path (python-engineio ignores a path in the URL)
TWILIO_AUDIO_PATH = "/audio/twilio"
AUDIOHOOK_AUDIO_PATH = "/audio/audiohook"
DEFAULT_NAMESPACE_PREFIX = "/socket.io"

# --- the cloud service (PROTOCOL.md §1) --------------------------------------------------------
CLOUD_EU_URL = "https://api.eu.veri-das.com"
CLOUD_EU_AUTH_URL = CLOUD_EU_URL + AUTH_PATH

# --- request defaults ----------------------------------------------------------------------------
DEFAULT_AUTHENTICITY_THRESHOLD = 0.8
DEFAULT_AUDIO_TOTAL_DURATION = 5.0
DEFAULT_AUDIO_PROTOCOL = "twilio"
