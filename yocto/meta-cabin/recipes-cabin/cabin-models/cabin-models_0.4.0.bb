SUMMARY = "cabin's bundled wallpaper model (diffusers ONNX layout) with its manifest"
DESCRIPTION = "wallpaper-tiny: an in-house text-to-image diffusion model trained on rendered scenes; manifest.json holds the sha256 of every file, checked when the service loads it."
HOMEPAGE = "https://example.invalid/cabin"
BUGTRACKER = "https://example.invalid/cabin/issues"
CVE_PRODUCT = "cabin"
SECTION = "multimedia"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=20;endline=20;md5=86b31c7756a1a7962f28b62856ed4f05"

PV .= "+git"

SRC_URI = "git://example.invalid/cabin.git;protocol=https;branch=main"
SRCREV = "0000000000000000000000000000000000000000"

inherit allarch

do_configure[noexec] = "1"
do_compile[noexec] = "1"

do_install() {
    install -d ${D}${datadir}/cabin/models
    cp -R --no-preserve=ownership ${S}/onnx/wallpaper-tiny ${D}${datadir}/cabin/models/
}

FILES:${PN} += "${datadir}/cabin/models"

BBCLASSEXTEND = "native nativesdk"
