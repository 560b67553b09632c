from core.api import HOOK_API_VERSION, Manifest

MANIFEST = Manifest(name="needs_missing", label="x", version="1", hook_api=HOOK_API_VERSION, depends=("nonexistent",))
