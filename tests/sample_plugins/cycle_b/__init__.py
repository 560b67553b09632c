from core.api import HOOK_API_VERSION, Manifest

MANIFEST = Manifest(name="cycle_b", label="x", version="1", hook_api=HOOK_API_VERSION, depends=("cycle_a",))
