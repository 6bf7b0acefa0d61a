# Builds the one-folder bundle dist\ppx-desktop\ with PyInstaller (Windows).
#
#   powershell -ExecutionPolicy Bypass -File packaging\build.ps1 [-Archive]
#
# Uses $env:PYTHON, else .venv\Scripts\python.exe, else python; that environment must have
# ppx-desktop's dependencies with the torch to freeze (CUDA build for a release). The sounddevice
# and soundfile wheels carry PortAudio and libsndfile on Windows, and PyInstaller's hooks collect them.
# The bundle holds ppx-desktop.exe (windowed, for the Start menu) and ppx-desktop-cli.exe (console).
param([switch]$Archive)
$ErrorActionPreference = 'Stop'
$Root = Split-Path -Parent $PSScriptRoot
Set-Location $Root
$Python = $env:PYTHON
if (-not $Python) {
    if (Test-Path .venv\Scripts\python.exe) { $Python = '.venv\Scripts\python.exe' } else { $Python = 'python' }
}
& $Python -c "import PyInstaller" 2>$null
if ($LASTEXITCODE -ne 0) { & $Python -m pip install --quiet "pyinstaller>=6.10"; if ($LASTEXITCODE) { exit 1 } }

$watch = [Diagnostics.Stopwatch]::StartNew()
& $Python -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build\pyinstaller packaging\ppx-desktop.spec
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
Copy-Item packaging\windows\install.ps1, packaging\windows\uninstall.ps1 dist\ppx-desktop\
$size = (Get-ChildItem dist\ppx-desktop -Recurse | Measure-Object Length -Sum).Sum / 1MB
Write-Host ("built dist\ppx-desktop in {0:N0} s, {1:N0} MB" -f $watch.Elapsed.TotalSeconds, $size)

if ($Archive) {
    $version = & $Python -c "import ppx_desktop; print(ppx_desktop.__version__)"
    $zip = "dist\ppx-desktop-$version-windows-x64.zip"
    Compress-Archive -Force -Path dist\ppx-desktop -DestinationPath $zip
    Write-Host "wrote $zip"
}
