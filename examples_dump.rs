fn main() {
    let c = roomgate::config::Config::default();
    println!("{}", toml::to_string(&c).unwrap());
}
