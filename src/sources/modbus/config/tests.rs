use super::*;

#[test]
fn every_shipped_profile_parses_and_names_its_source() {
    for (name, text) in PROFILES {
        let p = parse_profile(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&p.name, name);
        assert!(p.source.len() > 20, "{name} needs a source");
        assert!(!p.description.is_empty());
        assert!(p.points.contains_key("import_kwh"), "{name}");
    }
    let dtsu = profile("chint-dtsu666").unwrap();
    assert_eq!(dtsu.points["import_kwh"].address, 0x101E);
    assert_eq!(dtsu.points["power_total_w"].scale, 0.1);
    let sdm = profile("eastron-sdm630").unwrap();
    assert_eq!(sdm.points["import_kwh"].function, Function::Input);
}
