#!/usr/bin/env bash
# Installs the Debian packages edgekit needs (data sets, tools used by tests) and lets dpkg fetch arm64
# packages for the emulated device checks. Idempotent: when everything is present it changes nothing, so a
# non-root user whose machine has it all passes straight through.
set -euo pipefail

PACKAGES=(
  dataset-fashion-mnist   # Fashion-MNIST IDX files under /usr/share/datasets/fashion-mnist (the default recipe)
  opencv-doc              # OpenCV's sample photos and pedestrian video (examples/data): real images for the
                          #   third-party-model test of `edgekit compress`
  openssh-server          # sshd for the deploy tests (a real ssh server on a loopback port); brings the ssh client
  qemu-user-static        # runs the arm64 Python of a Raspberry Pi / Jetson sysroot (edgekit deploy --emulate)
  espeak-ng               # speech synthesis (many voices x accents): the synthesized keywords data set
  flite                   # a second TTS engine (5 voices): keyword models trained on one engine transfer poorly
  festival                # a third TTS engine, with three English voices (the keywords data set):
  festvox-kallpc16k       #   kal (diphone, American male)
  festvox-kdlpc16k        #   ked (diphone, American male; a speaker no other engine has)
  festvox-us-slt-hts      #   slt (HTS, American female)
  sonic-pi-samples        # 165 CC0 recordings (ambiences, loops, percussion): background noise for the keywords
  sox                     # audio conversion for users' WAV files (edgekit's errors suggest the sox command)
  libportaudio2           # PortAudio, which sounddevice needs for `edgekit demo mic` live input
  pulseaudio              # a virtual microphone (null sink + remapped source) for the live mic-demo test
  pulseaudio-utils        # paplay feeds that virtual microphone in real time
  libasound2-plugins      # ALSA's pulse plugin: how PortAudio reaches PulseAudio
  chromium                # headless browser: the tests render report.html (and the phone demo page) in it
  fonts-dejavu-core       # a font for that browser, so its screenshots have text in them
)

# node and npm install the browser page's runtime (web/package.json); a machine with NodeSource's nodejs
# (which bundles npm) keeps it, anything else gets Debian's.
command -v npm >/dev/null 2>&1 || PACKAGES+=(nodejs npm)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
need_arm64=0
command -v dpkg >/dev/null 2>&1 && ! dpkg --print-foreign-architectures | grep -qx arm64 && need_arm64=1
if [ ${#missing[@]} -eq 0 ] && [ "$need_arm64" -eq 0 ]; then
  echo "setup-system: all Debian packages present"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: apt-get not found; install these with your system's package manager: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "setup-system: need root to install: ${missing[*]:-nothing}${need_arm64:+ and the arm64 dpkg architecture}" >&2
    echo "  run: sudo dpkg --add-architecture arm64 && sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi
if [ "$need_arm64" -eq 1 ]; then
  echo "setup-system: adding the arm64 architecture (arm64 Python packages for emulated device checks)"
  $SUDO dpkg --add-architecture arm64
fi
$SUDO apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-system: installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
