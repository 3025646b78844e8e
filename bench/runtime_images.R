# Runtime images for three deploys in a row on the local Azure (an lm; a glm with the
# same packages; a randomForest): how many build steps compile Rust, and how many
# packages install from source or as Linux binaries, read from the rendered Dockerfiles
# and the local builds' logs (the local Azure checks a build but runs no RUN step, so
# these are what the real ACR Tasks builds would do with these Dockerfiles).
#
# Peer, in the same run: serveRless 0.1.0's single-image layout, where every runtime
# image compiled serveRless (Rust) itself and installed every pinned package, its own
# and the model's, from source (a repository URL without __linux__). Its counts are
# derived from the same specs: one Rust compile per runtime image built, one source
# install per pinned package of each.
# Usage: R_LIBS=.build/lib Rscript bench/runtime_images.R
suppressMessages(library(serveRless))
source(file.path(dirname(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])), "record.R"))
target <- local_azure()

set.seed(1)
models <- list(
  mpg = lm(mpg ~ wt + hp, data = mtcars),
  transmission = glm(am ~ wt + hp, data = mtcars, family = binomial),
  "mpg-forest" = randomForest::randomForest(mpg ~ ., data = mtcars, ntree = 50)
)

count <- function(log, pattern) sum(grepl(pattern, log))
rows <- list()
for (name in names(models)) {
  t <- system.time(dep <- suppressMessages(deploy_model(models[[name]], name, target)))[["elapsed"]]
  logs <- c(if (isTRUE(dep$base_built)) deploy_log(dep, base = TRUE),
            if (isTRUE(dep$built)) deploy_log(dep))
  dockerfiles <- c(if (isTRUE(dep$base_built)) dep$base_dockerfile, if (isTRUE(dep$built)) dep$dockerfile)
  spec <- dep$record$spec
  rows[[name]] <- data.frame(
    deploy = name,
    seconds = round(t, 1),
    base_built = dep$base_built,
    runtime_built = dep$built,
    rust_steps_dockerfile = sum(vapply(dockerfiles, function(d) {
      runs <- strsplit(d, "\nRUN ", fixed = TRUE)[[1]][-1]
      sum(grepl("rustup|cargo|R CMD INSTALL", runs))
    }, numeric(1))),
    rust_steps_log = count(logs, "compiles serveRless's Rust library"),
    binary_installs = count(logs, "^serveRless: installing .* \\(binary\\)$"),
    source_installs = count(logs, "^serveRless: installing .* \\(source\\)$") +
      count(logs, "installing \\*source\\* package") - count(logs, "installing \\*source\\* package 'serveRless'"),
    peer_rust_steps_dockerfile = 2L * isTRUE(dep$built), # rustup + R CMD INSTALL per image
    peer_rust_steps = as.integer(isTRUE(dep$built)),
    peer_source_installs = if (isTRUE(dep$built)) length(spec$base_packages) + length(spec$packages) else 0L,
    stringsAsFactors = FALSE
  )
}
rows <- do.call(rbind, rows)
cat(sprintf("Runtime images, three deploys on the local Azure, %s, %d cores\n",
            format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"), parallel::detectCores()))
print(rows, row.names = FALSE)
total <- colSums(rows[, -(1:4)])
j <- local_azure_journal(target)
runs <- j$body[grepl("/scheduleRun$", j$path)]
images <- vapply(runs, function(b) jsonlite::fromJSON(b)$imageNames[[1]], "", USE.NAMES = FALSE)
cat(sprintf("ACR Tasks builds: %s\n", paste(images, collapse = ", ")))
cat(sprintf(paste("Rust: %d RUN step(s) install a toolchain or compile (0.1.0: %d);",
                  "%d build(s) compile serveRless's Rust library (0.1.0: %d)\n"),
            total[["rust_steps_dockerfile"]], total[["peer_rust_steps_dockerfile"]],
            total[["rust_steps_log"]], total[["peer_rust_steps"]]))
cat(sprintf("Packages: %d as binaries, %d from source (0.1.0: 0 binaries, %d from source)\n",
            total[["binary_installs"]], total[["source_installs"]], total[["peer_source_installs"]]))
target_met <- total[["rust_steps_log"]] == 1 && sum(grepl("^serverless-base:", images)) == 1 &&
  total[["source_installs"]] == 0
cat(sprintf("target: Rust in the base image only, once; 0 source installs -> %s\n",
            if (target_met) "met" else "MISSED"))

bench_record("runtime_images", "builds that compile serveRless's Rust library, three deploys",
             total[["rust_steps_log"]], "builds",
             "serveRless 0.1.0 layout (same specs)", total[["peer_rust_steps"]], "lower",
             note = sprintf("builds: %s", paste(images, collapse = " ")))
bench_record("runtime_images", "packages installed from source, three deploys", total[["source_installs"]],
             "packages", "serveRless 0.1.0 layout (same specs)", total[["peer_source_installs"]], "lower",
             note = sprintf("%d as Linux binaries (P3M __linux__/jammy)", total[["binary_installs"]]))
bench_record("runtime_images", "base image builds, three deploys", sum(grepl("^serverless-base:", images)),
             "builds", better = "lower", note = "target: 1")
