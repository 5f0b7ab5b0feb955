"""URLs, paths, defaults and variable names: the one place that knows them; the emulator imports them too."""

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

# --- the cloud service (docs/protocol.md §1) --------------------------------------------------------
CLOUD_EU_URL = "https://api.eu.veri-das.com"
CLOUD_EU_AUTH_URL = CLOUD_EU_URL + AUTH_PATH

# --- request defaults ----------------------------------------------------------------------------
DEFAULT_AUTHENTICITY_THRESHOLD = 0.8
DEFAULT_AUDIO_TOTAL_DURATION = 5.0
DEFAULT_AUDIO_PROTOCOL = "twilio"
#: verify: the lowest score that verifies, and the seconds of voice it collects (docs/protocol.md §5: 3 s)
DEFAULT_SCORE_THRESHOLD = 0.6
DEFAULT_VERIFY_DURATION = 3.0

# --- profiles ------------------------------------------------------------------------------------
LOCAL_PROFILE = "local"
LOCAL_URL = f"http://{DEFAULT_EMULATOR_HOST}:{DEFAULT_EMULATOR_PORT}"
AUDIO_PATHS = {"twilio": TWILIO_AUDIO_PATH, "audiohook": AUDIOHOOK_AUDIO_PATH}
AUDIO_PROTOCOLS = tuple(AUDIO_PATHS)

# --- environment variables (docs/architecture.md §2: everything a flag sets can come from DASCTL_*) ---
ENV_CONFIG_DIR = "DASCTL_CONFIG_DIR"
ENV_PROFILE = "DASCTL_PROFILE"
ENV_CLIENT_ID = "DASCTL_CLIENT_ID"
ENV_CLIENT_SECRET = "DASCTL_CLIENT_SECRET"
ENV_TOKEN = "DASCTL_TOKEN"
ENV_AUDIOHOOK_SECRET = "DASCTL_AUDIOHOOK_SECRET"
ENV_STORE = "DASCTL_STORE"

# --- the credential store (dasctl/store) ------------------------------------------------------------
STORE_FILE_NAME = "store.db"
#: URL schemes that select the PostgreSQL backend; anything else is a SQLite file path
POSTGRES_SCHEMES = ("postgresql", "postgres")

SOURCE_FLAG = "flag"
SOURCE_ENV = "environment"
SOURCE_FILE = "profile file"
SOURCE_DEFAULT = "default"

CONFIG_FILE_NAME = "config.toml"
