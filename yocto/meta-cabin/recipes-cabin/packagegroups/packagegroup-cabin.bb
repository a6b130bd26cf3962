SUMMARY = "cabin: every service of the head-unit bundle and its model"
DESCRIPTION = "Pulls in cabin's D-Bus services (one package each) and the bundled models."
HOMEPAGE = "https://example.invalid/cabin"
BUGTRACKER = "https://example.invalid/cabin/issues"
SECTION = "multimedia"
LICENSE = "MIT"

inherit packagegroup

RDEPENDS:${PN} = "\
    cabin-companion \
    cabin-feedback \
    cabin-models \
    cabin-voice \
    cabin-wallpaper \
    "
