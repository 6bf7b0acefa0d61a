# Removes the Start-menu entry that install.ps1 added (exactly the files it wrote).
#
#   powershell -ExecutionPolicy Bypass -File uninstall.ps1
#
# Run it from the bundle folder (it asks that folder's ppx-desktop-cli.exe), or from a source
# checkout with ppx-desktop pip-installed (it asks that install).
# The work is done by `ppx-desktop --uninstall-desktop-entry`, the same code a pip install uses.
$ErrorActionPreference = 'Stop'
$cli = Join-Path $PSScriptRoot 'ppx-desktop-cli.exe'
if (Test-Path $cli) {
    & $cli --uninstall-desktop-entry
} elseif (Get-Command ppx-desktop -ErrorAction SilentlyContinue) {
    & ppx-desktop --uninstall-desktop-entry
} else {
    & python -m ppx_desktop --uninstall-desktop-entry
}
exit $LASTEXITCODE
