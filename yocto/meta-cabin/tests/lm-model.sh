#!/usr/bin/env bash
# cabin-lm-smollm2's do_compile as a Yocto build runs it: onnx/lm/build_lm.py with python3 and
# numpy alone (oe-core has python3-numpy-native, no `onnx` or `gguf`), on a GGUF. The real
# GGUF is a 92 MB download, so this runs on onnx/fixtures/tiny-llama-q4_1.gguf, which must
# give back onnx/fixtures/tiny-lm-q4 (made through `onnx` from the same weights) byte for
# byte, with a manifest that verifies.
#
#   yocto/meta-cabin/tests/lm-model.sh [BIN_DIR]    (cabin-manifest from BIN_DIR, default target/debug)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
bin_dir=${1:-$root/target/debug}
venv="$root/target/lm-numpy-venv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# scarthgap's numpy; the code must also run on the 2.x of later releases (onnx/lm/.venv).
[[ -x $venv/bin/python ]] || python3 -m venv "$venv"
"$venv/bin/pip" install -q numpy==1.26.4
if "$venv/bin/python" -I -c "import onnx" 2>/dev/null || "$venv/bin/python" -I -c "import gguf" 2>/dev/null; then
    echo "FAIL $venv has onnx or gguf: it would not show that numpy suffices"
    exit 1
fi

"$venv/bin/python" "$root/onnx/lm/build_lm.py" --quant q4_1 gguf "$root/onnx/fixtures/tiny-llama-q4_1.gguf" "$work/model"
fails=0
for f in model.onnx tokenizer.json config.json; do
    if cmp -s "$work/model/$f" "$root/onnx/fixtures/tiny-lm-q4/$f"; then
        echo "ok   $f as the fixture's"
    else
        echo "FAIL $f differs from onnx/fixtures/tiny-lm-q4/$f"
        fails=$((fails + 1))
    fi
done
if "$bin_dir/cabin-manifest" verify "$work/model"; then
    echo "ok   manifest verifies"
else
    fails=$((fails + 1))
fi
if ((fails)); then echo "lm-model: $fails check(s) failed"; exit 1; fi
echo "lm-model: the recipe's conversion works with numpy alone"
