//! Solar position against NREL's SPA (pvlib's implementation; tests/fixtures/spa_reference.json,
//! made by onnx/sun/make_spa_reference.py): within ±0.2° everywhere a car may be.

use cabin_wallpaper::sun;
use serde_json::Value;

#[test]
fn within_a_fifth_of_a_degree_of_nrel_spa() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/spa_reference.json"
    );
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rows = reference["rows"].as_array().unwrap();
    assert!(rows.len() >= 100);
    let mut worst: (f64, String) = (0.0, String::new());
    for row in rows {
        let (lat, lon) = (row["lat"].as_f64().unwrap(), row["lon"].as_f64().unwrap());
        let at = chrono::DateTime::parse_from_rfc3339(row["at"].as_str().unwrap())
            .unwrap()
            .to_utc();
        let p = sun::position(lat, lon, at);
        let want_el = row["elevation_deg"].as_f64().unwrap();
        let want_az = row["azimuth_deg"].as_f64().unwrap();
        let d_el = (p.elevation_deg - want_el).abs();
        // Azimuth wraps at 360°, and is meaningless with the sun near the zenith.
        let d_az = ((p.azimuth_deg - want_az + 540.0).rem_euclid(360.0) - 180.0).abs();
        let d_az = if want_el > 89.0 { 0.0 } else { d_az };
        let label = format!("{} {}", row["place"], row["at"]);
        assert!(
            d_el <= 0.2,
            "{label}: elevation {} vs SPA {want_el}",
            p.elevation_deg
        );
        assert!(
            d_az <= 0.2,
            "{label}: azimuth {} vs SPA {want_az}",
            p.azimuth_deg
        );
        if d_el.max(d_az) > worst.0 {
            worst = (d_el.max(d_az), label);
        }
    }
    eprintln!("worst difference from SPA: {:.4}° at {}", worst.0, worst.1);
}
