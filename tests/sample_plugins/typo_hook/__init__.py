from core.api import HOOK_API_VERSION, Manifest, hookimpl

MANIFEST = Manifest(name="typo_hook", label="x", version="1", hook_api=HOOK_API_VERSION)


@hookimpl
def dashbord_tiles(request, project):  # misspelt on purpose
    return []
