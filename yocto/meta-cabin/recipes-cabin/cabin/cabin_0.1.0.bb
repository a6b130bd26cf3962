SUMMARY = "cabin: on-device AI services for a car's head unit"
DESCRIPTION = "Time-aware wallpaper generation (ONNX diffusion on tract), the driver's companion chat, the voice command hook and the owners' feedback summariser/uploader, each a D-Bus system service, one package per service."
HOMEPAGE = "https://example.invalid/cabin"
BUGTRACKER = "https://example.invalid/cabin/issues"
CVE_PRODUCT = "cabin"
SECTION = "multimedia"
LICENSE = "MIT | Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=20;endline=20;md5=86b31c7756a1a7962f28b62856ed4f05"

PV .= "+git"

SRC_URI = "git://example.invalid/cabin.git;protocol=https;branch=main \
           file://cabin-wallpaperd.service \
           file://cabin-feedbackd.service \
           file://cabin-companiond.service \
           file://cabin-voiced.service \
           file://usr-share-cabin-models.mount \
           file://dbus/org.cabin.Wallpaper1.conf \
           file://dbus/org.cabin.Wallpaper1.service \
           file://dbus/org.cabin.Feedback1.conf \
           file://dbus/org.cabin.Feedback1.service \
           file://dbus/org.cabin.Companion1.conf \
           file://dbus/org.cabin.Companion1.service \
           file://dbus/org.cabin.Voice1.conf \
           file://dbus/org.cabin.Voice1.service \
           "
SRCREV = "0000000000000000000000000000000000000000"

# Every crate of Cargo.lock, pinned with its checksum (regenerate: yocto/meta-cabin/scripts/update-crates.sh).
require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd useradd

CARGO_BUILD_FLAGS += "--bin cabin-wallpaperd --bin cabin-wallpaper --bin cabin-feedbackd --bin cabin-feedback --bin cabin-companiond --bin cabin-voiced --bin cabinctl --bin cabin-lm --bin cabin-manifest"

PACKAGE_BEFORE_PN = "${PN}-wallpaper ${PN}-feedback ${PN}-companion ${PN}-voice ${PN}-models-slot"

FILES:${PN}-wallpaper += "\
    ${bindir}/cabin-wallpaperd \
    ${bindir}/cabin-wallpaper \
    ${systemd_system_unitdir}/cabin-wallpaperd.service \
    ${datadir}/dbus-1/system.d/org.cabin.Wallpaper1.conf \
    ${datadir}/dbus-1/system-services/org.cabin.Wallpaper1.service \
    "
FILES:${PN}-feedback += "\
    ${bindir}/cabin-feedbackd \
    ${bindir}/cabin-feedback \
    ${systemd_system_unitdir}/cabin-feedbackd.service \
    ${datadir}/dbus-1/system.d/org.cabin.Feedback1.conf \
    ${datadir}/dbus-1/system-services/org.cabin.Feedback1.service \
    "

FILES:${PN}-companion += "\
    ${bindir}/cabin-companiond \
    ${bindir}/cabin-lm \
    ${systemd_system_unitdir}/cabin-companiond.service \
    ${datadir}/dbus-1/system.d/org.cabin.Companion1.conf \
    ${datadir}/dbus-1/system-services/org.cabin.Companion1.service \
    "

FILES:${PN}-voice += "\
    ${bindir}/cabin-voiced \
    ${bindir}/cabinctl \
    ${systemd_system_unitdir}/cabin-voiced.service \
    ${datadir}/dbus-1/system.d/org.cabin.Voice1.conf \
    ${datadir}/dbus-1/system-services/org.cabin.Voice1.service \
    "

# The models slot of a RAUC A/B unit: the verifier its post-install hook runs, and the mount of
# the slot the hook switched to over the image's own models.
FILES:${PN}-models-slot += "\
    ${bindir}/cabin-manifest \
    ${systemd_system_unitdir}/usr-share-cabin-models.mount \
    "

RDEPENDS:${PN}-wallpaper = "cabin-models dbus"
RDEPENDS:${PN}-feedback = "dbus"
RDEPENDS:${PN}-companion = "dbus"
RDEPENDS:${PN}-voice = "dbus"
# The on-device language model of the `local` backend (4-bit, made from its GGUF at build time).
RRECOMMENDS:${PN}-companion = "cabin-lm-smollm2"
ALLOW_EMPTY:${PN} = "1"

# One system user per service; the cockpit HMI's processes join the hmi group.
USERADD_PACKAGES = "${PN}-wallpaper ${PN}-feedback ${PN}-companion ${PN}-voice"
GROUPADD_PARAM:${PN}-wallpaper = "--system hmi"
USERADD_PARAM:${PN}-wallpaper = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group cabin-wallpaper"
USERADD_PARAM:${PN}-feedback = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group cabin-feedback"
USERADD_PARAM:${PN}-companion = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group cabin-companion"
USERADD_PARAM:${PN}-voice = "--system --no-create-home --home-dir /nonexistent --shell /sbin/nologin --user-group cabin-voice"

SYSTEMD_PACKAGES = "${PN}-wallpaper ${PN}-feedback ${PN}-companion ${PN}-voice ${PN}-models-slot"
SYSTEMD_SERVICE:${PN}-wallpaper = "cabin-wallpaperd.service"
SYSTEMD_SERVICE:${PN}-feedback = "cabin-feedbackd.service"
SYSTEMD_SERVICE:${PN}-companion = "cabin-companiond.service"
SYSTEMD_SERVICE:${PN}-voice = "cabin-voiced.service"
SYSTEMD_SERVICE:${PN}-models-slot = "usr-share-cabin-models.mount"
SYSTEMD_AUTO_ENABLE = "enable"

do_install:append() {
    install -d ${D}${systemd_system_unitdir} ${D}${datadir}/dbus-1/system.d ${D}${datadir}/dbus-1/system-services
    install -m 0644 ${UNPACKDIR}/cabin-wallpaperd.service ${UNPACKDIR}/cabin-feedbackd.service ${UNPACKDIR}/cabin-companiond.service ${UNPACKDIR}/cabin-voiced.service ${UNPACKDIR}/usr-share-cabin-models.mount ${D}${systemd_system_unitdir}/
    install -m 0644 ${UNPACKDIR}/dbus/org.cabin.Wallpaper1.conf ${UNPACKDIR}/dbus/org.cabin.Feedback1.conf ${UNPACKDIR}/dbus/org.cabin.Companion1.conf ${UNPACKDIR}/dbus/org.cabin.Voice1.conf ${D}${datadir}/dbus-1/system.d/
    install -m 0644 ${UNPACKDIR}/dbus/org.cabin.Wallpaper1.service ${UNPACKDIR}/dbus/org.cabin.Feedback1.service ${UNPACKDIR}/dbus/org.cabin.Companion1.service ${UNPACKDIR}/dbus/org.cabin.Voice1.service ${D}${datadir}/dbus-1/system-services/
}

BBCLASSEXTEND = "native nativesdk"
