# Adds ppx-desktop to your Start menu (for you only, no administrator rights needed).
#
#   powershell -ExecutionPolicy Bypass -File install.ps1
#
# Run it from the bundle folder (it registers that folder's ppx-desktop.exe), or from a source
# checkout with ppx-desktop pip-installed (it registers `pythonw -m ppx_desktop` of that install).
# The work is done by `ppx-desktop --install-desktop-entry`, the same code a pip install uses.
$ErrorActionPreference = 'Stop'
$cli = Join-Path $PSScriptRoot 'ppx-desktop-cli.exe'
if (Test-Path $cli) {
    & $cli --install-desktop-entry
} elseif (Get-Command ppx-desktop -ErrorAction SilentlyContinue) {
    & ppx-desktop --install-desktop-entry
} else {
    & python -m ppx_desktop --install-desktop-entry
}
exit $LASTEXITCODE
