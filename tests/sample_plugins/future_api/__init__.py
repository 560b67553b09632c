from core.api import Manifest

MANIFEST = Manifest(name="future_api", label="x", version="1", hook_api="2.0")
