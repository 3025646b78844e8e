# deploy_model() on the local Azure: runtime images, shared identity, plans.

# Build logs stream to the console for users; the tests keep their output short.
deploy_model <- function(...) suppressMessages(serveRless::deploy_model(...))

# Each test gets its own local Azure, so its journal shows only its own calls.
deploy_target <- function(envir = parent.frame()) {
  local_azure(.local_envir = envir)
}

journal_calls <- function(target, pattern, method = NULL) {
  j <- local_azure_journal(target)
  hit <- grepl(pattern, j$path, ignore.case = TRUE)
  if (!is.null(method)) hit <- hit & j$method %in% method
  j[hit, , drop = FALSE]
}

# The images the journal's ACR Tasks builds asked for ("serverless-base:<hash>", ...).
built_images <- function(target) {
  runs <- journal_calls(target, "/scheduleRun$", "POST")
  vapply(runs$body, function(b) jsonlite::fromJSON(b)$imageNames[[1]], "", USE.NAMES = FALSE)
}

writes <- function(journal) {
  journal[journal$method %in% c("PUT", "PATCH", "DELETE") |
            grepl("scheduleRun|listBuildSourceUploadUrl|/cancel$", journal$path), , drop = FALSE]
}

test_that("a runtime image is built once per spec and shared by models that need the same packages", {
  target <- deploy_target()
  fits <- fit_models()

  dep1 <- deploy_model(fits$lm, "mpg", target)
  expect_s3_class(dep1, "serverless_deployment")
  expect_true(dep1$built)
  expect_true(dep1$base_built)
  # The base (R + serveRless) first, then the runtime image FROM it.
  expect_equal(built_images(target), c(sub("^[^/]+/", "", dep1$base_image), sub("^[^/]+/", "", dep1$image)))
  expect_match(dep1$image, "/serverless-runtime:[0-9a-f]{16}$")
  expect_match(dep1$base_image, "/serverless-base:[0-9a-f]{16}$")
  expect_identical(get_deployment("mpg", target)$image, dep1$image)
  expect_identical(get_deployment("mpg", target)$model_version, dep1$model_version)

  # glm needs only stats, like lm: same spec, same image, no build.
  dep2 <- deploy_model(fits$glm, "transmission", target)
  expect_false(dep2$built)
  expect_false(dep2$base_built)
  expect_identical(dep2$image, dep1$image)
  expect_equal(nrow(journal_calls(target, "/scheduleRun$", "POST")), 2)

  # A new version of an existing deployment: no build either.
  refit <- stats::lm(mpg ~ wt + hp + qsec, data = fits$data)
  dep3 <- deploy_model(refit, "mpg", target)
  expect_false(dep3$built)
  expect_false(identical(dep3$model_version, dep1$model_version))
  expect_identical(get_deployment("mpg", target)$model_version, dep3$model_version)
  expect_equal(nrow(journal_calls(target, "/scheduleRun$", "POST")), 2)

  # The identity and its two role assignments were created once, whatever the count.
  expect_equal(nrow(journal_calls(target, "userAssignedIdentities/[^/]+$", "PUT")), 1)
  expect_equal(nrow(journal_calls(target, "roleAssignments/[^/]+$", "PUT")), 2)
  expect_equal(nrow(journal_calls(target, "registries/[^/]+$", "PUT")), 1)
  expect_null(get_deployment("never-deployed", target))
})

test_that("a model needing another package gets its own image on the same base, built once", {
  skip_if_not_installed("randomForest")
  target <- deploy_target()
  fits <- fit_models()
  lm_dep <- deploy_model(fits$lm, "mpg", target)
  glm_dep <- deploy_model(fits$glm, "transmission", target)
  rf_dep <- deploy_model(fits$rf, "mpg-forest", target)
  expect_true(rf_dep$built)
  expect_false(rf_dep$base_built)
  expect_false(identical(rf_dep$image, lm_dep$image))
  expect_identical(rf_dep$base_image, lm_dep$base_image)
  version <- utils::packageDescription("randomForest")$Version
  expect_match(rf_dep$dockerfile, paste0("\n    randomForest==", version, " \\\\\n"))
  expect_false(grepl("randomForest", lm_dep$dockerfile))
  # Three deploys: one base build, two runtime images (the glm shares the lm's).
  images <- built_images(target)
  expect_equal(sum(grepl("^serverless-base:", images)), 1)
  expect_equal(sum(grepl("^serverless-runtime:", images)), 2)
  expect_identical(glm_dep$image, lm_dep$image)
  # serveRless's own packages are in the base; the runtime image adds only the model's.
  base_pins <- vapply(rf_dep$record$spec$base_packages, function(p) p$name, "")
  model_pins <- vapply(rf_dep$record$spec$packages, function(p) p$name, "")
  expect_true(all(c("cli", "rlang", "processx") %in% base_pins))
  expect_identical(model_pins, "randomForest")
  expect_false(grepl("processx==", rf_dep$dockerfile, fixed = TRUE))
  # Dependencies come before the packages that need them.
  expect_lt(match("ps", base_pins), match("processx", base_pins))
})

test_that("the default Dockerfiles build serveRless from the build context, never from a repository", {
  target <- deploy_target()
  dep <- deploy_model(fit_models()$lm, "mpg", target)
  tarball <- dep$record$spec$serverless_tarball$file_name
  expect_identical(tarball, sprintf("serveRless_%s.tar.gz", utils::packageVersion("serveRless")))
  base <- dep$base_dockerfile
  expect_match(base, sprintf("COPY %s /tmp/%s", tarball, tarball), fixed = TRUE)
  expect_match(base, sprintf("echo \"%s  /tmp/%s\" | sha256sum -c -",
                             dep$record$spec$serverless_tarball$sha256, tarball), fixed = TRUE)
  expect_match(base, sprintf("R CMD INSTALL --library=/opt/serverless-lib /tmp/%s", tarball), fixed = TRUE)
  expect_false(grepl("serveRless\"", gsub("packageVersion\\(\"serveRless\"", "", base)))
  expect_false(grepl("install.packages", base, fixed = TRUE))
  # The kept source is the installed one: its sha256 matches the copy in the package.
  kept <- system.file("serveRless-source", tarball, package = "serveRless")
  sha <- strsplit(system2("sha256sum", shQuote(kept), stdout = TRUE), " ")[[1]][1]
  expect_identical(dep$record$spec$serverless_tarball$sha256, sha)
  # Packages come as Linux binaries of the base image's distribution.
  expect_match(base, "https://packagemanager.posit.co/cran/__linux__/jammy/latest", fixed = TRUE)
  # The runtime image is FROM the base and compiles nothing.
  expect_match(dep$dockerfile, paste0("\nFROM ", dep$base_image, "\n"), fixed = TRUE)
  for (rust in c("rustup", "cargo", "R CMD INSTALL", "serveRless_")) {
    expect_false(grepl(rust, dep$dockerfile, fixed = TRUE))
  }
  # The local build checked the tarball it was given and installed serveRless from it.
  log <- deploy_log(dep, base = TRUE)
  expect_s3_class(log, "serverless_log")
  expect_true(any(grepl(sprintf("/tmp/%s: OK", tarball), log, fixed = TRUE)))
  expect_true(any(grepl("installing *source* package 'serveRless'", log, fixed = TRUE)))
  expect_true(any(grepl("Run ID: .* was successful", log)))
})

test_that("build logs are a status line, kept whole, and readable from any deployment using the image", {
  target <- deploy_target()
  fits <- fit_models()
  out <- character()
  dep <- withCallingHandlers(
    serveRless::deploy_model(fits$lm, "mpg", target),
    message = function(m) {
      out <<- c(out, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  )
  printed <- capture.output(suppressMessages(
    dep2 <- serveRless::deploy_model(fits$glm, "transmission", target)
  ), type = "output")
  # The steps are announced; the log itself is not printed (this session is not a terminal).
  expect_true(any(grepl("building serverless-base:", out, fixed = TRUE)))
  expect_false(any(grepl("Step 1/", out, fixed = TRUE)))
  expect_length(printed, 0)
  # Callers (the addin) collect the lines from a condition; an option prints them.
  collected <- character()
  shown <- character()
  withr::with_options(list(serveRless.show_build_log = TRUE), withCallingHandlers(
    serveRless::deploy_model(fits$lm, "mpg-again", local_azure()),
    serverless_log_lines = function(l) collected <<- c(collected, l$lines),
    message = function(m) {
      shown <<- c(shown, conditionMessage(m))
      invokeRestart("muffleMessage")
    }
  ))
  expect_true(any(grepl("Step 1/", collected, fixed = TRUE)))
  expect_true(any(grepl("Step 1/", shown, fixed = TRUE)))
  # The deploy that built the image and a later one that reused it read the same log.
  log <- deploy_log(dep)
  expect_true(any(grepl(sprintf("Successfully pushed image: %s", dep$image), log, fixed = TRUE)))
  expect_identical(deploy_log(get_deployment("transmission", target)), log)
  expect_output(print(dep), "deploy_log()", fixed = TRUE)
  expect_error(deploy_log(list()), class = "serverless_error_input")
})

test_that("dry_run writes nothing and plans exactly what the real run does", {
  target <- deploy_target()
  fits <- fit_models()

  plan <- deploy_model(fits$lm, "mpg", target, dry_run = TRUE)
  expect_s3_class(plan, "serverless_plan")
  expect_equal(nrow(writes(local_azure_journal(target))), 0)
  expect_equal(nrow(blob_list(target, "serverless/")), 0)
  expect_setequal(plan$items$kind, c("model version", "identity", "registry", "role assignment",
                                     "base image", "image", "blob"))
  expect_true(all(plan$items$action == "create"))

  dep <- deploy_model(fits$lm, "mpg", target)
  expect_identical(dep$plan$items$action, plan$items$action)
  expect_identical(dep$plan$items$kind, plan$items$kind)

  # Now a new model version with the same spec: the plan says so, and nothing is written.
  before_journal <- local_azure_journal(target)
  before_blobs <- blob_list(target, "serverless/")
  refit <- stats::lm(mpg ~ wt + hp + qsec, data = fits$data)
  plan2 <- deploy_model(refit, "mpg", target, dry_run = TRUE)
  after <- local_azure_journal(target)
  expect_equal(nrow(writes(after[-seq_len(nrow(before_journal)), ])), 0)
  expect_identical(blob_list(target, "serverless/")$path, before_blobs$path)
  actions <- stats::setNames(plan2$items$action, plan2$items$kind)
  expect_equal(unname(actions[c("identity", "registry", "base image", "image")]), rep("unchanged", 4))
  expect_equal(unname(actions["model version"]), "create")
  expect_equal(unname(actions["blob"]), "update")

  dep2 <- deploy_model(refit, "mpg", target)
  expect_identical(dep2$plan$items$action, plan2$items$action)
  expect_false(dep2$built)
  expect_output(print(plan2), "unchanged")
  expect_output(print(dep2), dep2$model_version, fixed = TRUE)
})

test_that("no password, key or token is in any request the journal recorded for a deploy", {
  target <- deploy_target()
  deploy_model(fit_models()$lm, "mpg", target)
  j <- local_azure_journal(target)
  expect_gt(nrow(j), 5)
  bodies <- paste(j$body, collapse = "\n")
  secrets <- c(serveRless:::unseal(target$secrets$key), serveRless:::unseal(target$secrets$credential$secrets$client_secret))
  for (s in secrets[nzchar(secrets)]) expect_false(grepl(s, bodies, fixed = TRUE))
  expect_false(grepl("eyJ[A-Za-z0-9_-]{10,}\\.", bodies)) # no JWT
  expect_false(grepl("sig=[A-Za-z0-9%]{10,}", bodies))
  expect_false(grepl("\"(password|adminUserEnabled\": *true)", bodies))
  expect_false(grepl("listCredentials", paste(j$path, collapse = "\n")))
})

test_that("bad deploy input is refused before any network call, naming the value", {
  offline <- azurite_az_target(blob_endpoint = "http://127.0.0.1:9/devstoreaccount1")
  fit <- fit_models()$lm
  for (cpu in list(0.5, 5, "2", NA_real_)) {
    err <- expect_error(deploy_model(fit, "mpg", offline, cpu = cpu), class = "serverless_error_input")
    expect_match(conditionMessage(err), "cpu")
  }
  for (mem in list(0.4, 16.5, 1.55)) {
    err <- expect_error(deploy_model(fit, "mpg", offline, memory_gb = mem),
                        class = "serverless_error_input")
    expect_match(conditionMessage(err), format(mem), fixed = TRUE)
  }
  err <- expect_error(deploy_model(fit, "mpg", offline, packages = "notapackage123"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "notapackage123")
  orphan <- structure(list(coef = 1), class = "orphanmodel")
  err <- expect_error(deploy_model(orphan, "orphan", offline), class = "serverless_error_input")
  expect_match(conditionMessage(err), "orphanmodel")
  err <- expect_error(deploy_model(fit, "Bad_Name", offline), class = "serverless_error_input")
  expect_match(conditionMessage(err), "Bad_Name")
  expect_error(deploy_model(fit, "mpg", offline, runtime = list()), class = "serverless_error_input")
  expect_error(runtime_options(serverless_tarball = "/no/such/serveRless.tar.gz"),
               class = "serverless_error_input")
  # A tarball that is not serveRless, or not the installed version.
  fake_package <- function(name, version) {
    dir <- withr::local_tempdir(.local_envir = parent.frame())
    dir.create(file.path(dir, name))
    writeLines(c(paste("Package:", name), paste("Version:", version)), file.path(dir, name, "DESCRIPTION"))
    file <- file.path(dir, sprintf("%s_%s.tar.gz", name, version))
    withr::with_dir(dir, utils::tar(basename(file), name, compression = "gzip", tar = "internal"))
    file
  }
  err <- expect_error(runtime_options(serverless_tarball = fake_package("other", "1.0")),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "not a serveRless source tarball")
  err <- expect_error(runtime_options(serverless_tarball = fake_package("serveRless", "9.9.9")),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "9.9.9")
  plain <- tempfile(fileext = ".tar.gz")
  writeLines("not a tarball", plain)
  expect_error(runtime_options(serverless_tarball = plain), class = "serverless_error_input")
  # A base image without R, or of another R; a repository that is not http(s).
  err <- expect_error(runtime_options(base_image = "ubuntu:22.04"), class = "serverless_error_input")
  expect_match(conditionMessage(err), "not an image with R")
  expect_s3_class(runtime_options(base_image = "ubuntu:22.04", base_has_r = TRUE),
                  "serverless_runtime_options")
  err <- expect_error(runtime_options(base_image = "rocker/r-ver:3.6.3"), class = "serverless_error_input")
  expect_match(conditionMessage(err), "3.6")
  for (repo in c("ftp://cran.example.org", "/srv/cran", "file:///srv/cran", "cran")) {
    err <- expect_error(runtime_options(repo = repo), class = "serverless_error_input")
    expect_match(conditionMessage(err), "http(s)", fixed = TRUE)
  }
  expect_error(runtime_options(snapshot = "yesterday"), class = "serverless_error_input")
  expect_error(runtime_options(snapshot = "2024-02-30"), class = "serverless_error_input")
  expect_error(runtime_options(repo = "https://cloud.r-project.org", snapshot = "2024-06-03"),
               class = "serverless_error_input")
  expect_error(runtime_options(distro = "Jammy Jellyfish"), class = "serverless_error_input")
  # What the options derive.
  expect_identical(runtime_options(snapshot = as.Date("2024-06-03"))$repo,
                   "https://packagemanager.posit.co/cran/2024-06-03")
  distro <- serveRless:::base_image_distro
  expect_identical(c(distro("rocker/r-ver:4.1.3"), distro("rocker/r-ver:4.2.1"),
                     distro("docker.io/rocker/r-ver:4.4.2"), distro("rocker/r-ver:4.5.0")),
                   c("focal", "jammy", "jammy", "noble"))
  expect_identical(distro("r-base:4.2.2"), NA_character_)
  expect_null(runtime_options(distro = NA)$distro)
  err <- expect_error(azurite_az_target(blob_endpoint = "http://127.0.0.1:9/devstoreaccount1",
                                        registry = "has-dashes"),
                      class = "serverless_error_input")
  expect_match(conditionMessage(err), "has-dashes")
})

test_that("a taken registry name and a failing build are clear errors", {
  target <- deploy_target()
  fit <- fit_models()$lm
  taken <- target
  taken$registry <- "contoso"
  err <- expect_error(deploy_model(fit, "mpg", taken), class = "serverless_error_input")
  expect_match(conditionMessage(err), "contoso")
  expect_equal(nrow(journal_calls(target, "registries/[^/]+$", "PUT")), 0)

  # An image reference Docker refuses (upper case) fails the build; the error has its log.
  err <- expect_error(
    deploy_model(fit, "mpg", target,
                 runtime = runtime_options(base_image = "Rocker/R-ver:4.2.2", base_has_r = TRUE)),
    class = "serverless_error_azure"
  )
  expect_match(conditionMessage(err), "Rocker/R-ver", fixed = TRUE)
  expect_match(conditionMessage(err), "Run ID")
  expect_null(get_deployment("mpg", target))
})

test_that("the pre-flight's fresh R session does not source R CMD check's startup file", {
  # R CMD check runs tests with R_TESTS=startup.Rs, a path relative to tests/; R's
  # startup sources it in every child R that inherits it. A user's own package tests
  # (run in parallel workers, or from another directory) deploy from there.
  target <- deploy_target()
  withr::local_envvar(R_TESTS = "no-such-dir/startup.Rs")
  plan <- deploy_model(lm(mpg ~ wt, data = mtcars), "rtests", target, dry_run = TRUE)
  expect_s3_class(plan, "serverless_plan")
})
