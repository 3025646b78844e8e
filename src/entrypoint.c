// Registers the Rust routines with R (see src/rust/r/src/lib.rs).
void R_init_serveRless_extendr(void *dll);
void register_extendr_panic_hook(void);

void R_init_serveRless(void *dll) {
    register_extendr_panic_hook();
    R_init_serveRless_extendr(dll);
}
