# deploy_model(): store the model and make sure its runtime image exists.

#' Deploy a model: its bundle in Blob Storage, its runtime image in the registry
#'
#' `deploy_model()` stores the model as a new version (see [store_model()]), makes sure
#' a scoring runtime image for it exists in the target's Azure Container Registry, and
#' records the deployment in `deployments/<name>.json` in the target's container.
#'
#' Two images are built in the cloud by ACR Tasks (no local Docker needed), each from
#' a Dockerfile rendered from the package's templates:
#'
#' * the **base image** `serverless-base:<hash>`: R (the rocker image of your R
#'   version), the packages serveRless needs, and serveRless compiled from the source
#'   tarball kept when you installed it (no package repository needs to serve it). It is
#'   the only build that compiles Rust, once per R version and serveRless source.
#' * the **runtime image** `serverless-runtime:<hash>`: `FROM` the base, plus the
#'   packages the model needs at the versions installed in your library (with their
#'   dependencies), as Linux binaries from Posit Package Manager where it has them.
#'
#' Each tag is the hash of what goes into the image, so models that need the same
#' packages share one image and a new model version normally builds nothing. Build
#' progress shows as a one-line status; the whole log is kept (see [deploy_log()]).
#'
#' Made once per target and shared by its deployments: the registry (Basic SKU, admin
#' user disabled), the user-assigned identity the scoring containers run as, and its two
#' role assignments (AcrPull on the registry, Storage Blob Data Contributor on the
#' storage account, assumed to be in the target's resource group). No registry password
#' or storage key is used. On the local Azure, the "image" runs as the host's R with the
#' host library.
#'
#' @inheritParams store_model
#' @param cpu,memory_gb What each scoring container group gets: 1 to 4 cores, 0.5 to 16
#'   GB in steps of 0.1 (Azure Container Instances' limits).
#' @param dry_run If `TRUE`, write nothing and return a `serverless_plan` of what would
#'   be created, updated or left unchanged.
#' @param runtime How images are built: see [runtime_options()].
#' @return A `serverless_deployment` (or a `serverless_plan` for a dry run). Its
#'   `ptype` is the model's input prototype, which [score_now()] checks `newdata`
#'   against before uploading it. `get_deployment()` returns the deployment, with the
#'   same `ptype` (rebuilt from the deployment record), or `NULL` if there is none.
#' @seealso [runtime_options()], [store_model()], [deploy_log()]
#' @examples
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' fit <- lm(mpg ~ wt + hp, data = mtcars)
#' deploy_model(fit, "mpg", target, dry_run = TRUE)
#' dep <- deploy_model(fit, "mpg", target)
#' dep
#' get_deployment("mpg", target)
#' }
#' }
#' @export
deploy_model <- function(model, name, target, predict_fun = NULL, ptype = NULL,
                         packages = NULL, cpu = 1, memory_gb = 1.5, dry_run = FALSE,
                         runtime = runtime_options(), predict_args = list(), data = NULL) {
  check_string(name)
  rust_check(rs_check_model_name(name))
  check_target(target)
  check_flag(dry_run)
  check_resources(cpu, memory_gb)
  if (!inherits(runtime, "serverless_runtime_options")) {
    serverless_abort("{.arg runtime} must come from {.fn runtime_options}.", "input")
  }
  check_arm_target(target)
  # The pre-flight (see store_model()) runs here, before any image is built or any
  # Azure call is made.
  bundle <- model_bundle(model, predict_fun, ptype, packages, predict_args, data,
                         require_predict = TRUE, preflight = TRUE)
  tarball <- runtime$serverless_tarball %||% installed_source_tarball()
  spec <- runtime_spec(bundle$packages, runtime, tarball)
  request <- list(
    name = name,
    container = target$container,
    subscription = target$subscription,
    resource_group = target$resource_group,
    location = target$location,
    storage_account = target$storage_account,
    registry = target$registry,
    cpu = as.numeric(cpu),
    memory_gb = as.numeric(memory_gb),
    spec = spec,
    dockerfile_template = read_template("Dockerfile.hbs"),
    base_dockerfile_template = read_template("Dockerfile-base.hbs"),
    install_script = read_template("install-pinned.R"),
    serverless_tarball_path = tarball,
    bundle_path = bundle$file,
    meta = bundle$meta,
    dry_run = dry_run,
    build_timeout_s = runtime$build_timeout
  )
  out <- rust_wait(rs_deploy_model(target_storage(target), target_arm(target), drop_nulls(request)))
  plan <- new_plan(out$plan$items, what = sprintf("deploy_model(name = \"%s\")", name))
  if (dry_run) {
    return(plan)
  }
  new_deployment(out$deployment, target, built = out$built, model_reused = out$model_reused,
                 bytes_sent = out$bytes_sent, arm_calls = out$arm_calls, plan = plan,
                 build = out$build, dockerfile = out$dockerfile, base_built = out$base_built,
                 base_build = out$base_build, base_dockerfile = out$base_dockerfile,
                 ptype = bundle$ptype)
}

#' @rdname deploy_model
#' @export
get_deployment <- function(name, target) {
  check_string(name)
  rust_check(rs_check_model_name(name))
  check_target(target)
  record <- rust_wait(rs_get_deployment(target_storage(target), target$container, name))
  if (is.null(record)) {
    return(NULL)
  }
  new_deployment(record, target)
}

#' How runtime images are built
#'
#' @param base_image The image with R that the base image starts from. By default the
#'   rocker/r-ver image of your R version (e.g. `rocker/r-ver:4.2.2`). It must be an
#'   image with R (rocker images, `r-base`, `rhub/r-minimal`...) of your R major.minor
#'   version, as bundles and package pins are made with it; for another image that has
#'   R at `Rscript`, say so with `base_has_r = TRUE`.
#' @param repo The CRAN-like repository (an http(s) URL) the pinned package versions
#'   are installed from (current versions from `src/contrib`, older ones from its
#'   `Archive`). For Posit Package Manager (the default) the Linux binaries of the base
#'   image's distribution are used (`.../__linux__/<distro>/...`), which install in
#'   seconds; other repositories serve sources, which are compiled.
#' @param snapshot A date (`"2024-06-03"` or a `Date`): install from Posit Package
#'   Manager's snapshot of that day instead of `latest`, so a rebuild gets the same
#'   packages. Only for a Posit Package Manager `repo`.
#' @param distro The Linux distribution code name of `base_image` (e.g. `"jammy"`),
#'   for binary packages. Known for rocker/r-ver images; `NA` installs from source.
#' @param serverless_tarball A serveRless source tarball (from `R CMD build`) to put in
#'   the base image's build context. By default the copy of the source kept when this
#'   serveRless was installed. It must be serveRless at your installed version.
#' @param base_has_r Set to `TRUE` when `base_image` is not one of the known R images
#'   but has R.
#' @param build_timeout Seconds a build may take.
#' @return A `serverless_runtime_options` list.
#' @examples
#' runtime_options(snapshot = "2024-06-03")$repo
#' runtime_options()$distro  # the Ubuntu release of the default rocker/r-ver image
#' @export
runtime_options <- function(base_image = NULL, repo = "https://packagemanager.posit.co/cran/latest",
                            snapshot = NULL, distro = NULL, serverless_tarball = NULL,
                            base_has_r = FALSE, build_timeout = 3600) {
  if (is.null(base_image)) {
    base_image <- paste0("rocker/r-ver:", R.version$major, ".", R.version$minor)
  }
  check_string(base_image)
  check_flag(base_has_r)
  check_base_image(base_image, base_has_r)
  check_string(repo)
  if (!grepl("^https?://[^/[:space:]]+", repo)) {
    serverless_abort(c("{.arg repo} must be an http(s) URL of a CRAN-like repository, not {.val {repo}}.",
                       i = "For example {.url https://packagemanager.posit.co/cran/latest}."),
                     "input")
  }
  repo <- sub("/+$", "", repo)
  if (!is.null(snapshot)) {
    day <- NULL
    if (inherits(snapshot, "Date") && length(snapshot) == 1 && !is.na(snapshot)) {
      day <- format(snapshot)
    } else if (is.character(snapshot) && length(snapshot) == 1 && !is.na(snapshot) &&
               grepl("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", snapshot) &&
               !is.na(as.Date(snapshot, optional = TRUE))) {
      day <- snapshot
    }
    if (is.null(day)) {
      serverless_abort("{.arg snapshot} must be a date such as {.val 2024-06-03}.", "input")
    }
    ppm <- "^https://(packagemanager\\.posit\\.co|p3m\\.dev|packagemanager\\.rstudio\\.com)/[^/]+/[^/]+$"
    if (!grepl(ppm, repo)) {
      serverless_abort(c("{.arg snapshot} needs a Posit Package Manager {.arg repo}, not {.val {repo}}.",
                         i = "Give the dated URL as {.arg repo} instead."), "input")
    }
    repo <- sub("/[^/]+$", paste0("/", day), repo)
  }
  if (is.null(distro)) {
    distro <- base_image_distro(base_image)
  } else if (length(distro) == 1 && is.atomic(distro) && is.na(distro)) {
    distro <- NA_character_
  } else if (!(is.character(distro) && length(distro) == 1 && grepl("^[a-z][a-z0-9-]*$", distro))) {
    serverless_abort("{.arg distro} must be a distribution code name such as {.val jammy}, or {.code NA}.",
                     "input")
  }
  if (!is.null(serverless_tarball)) {
    check_string(serverless_tarball)
    serverless_tarball <- check_serverless_tarball(serverless_tarball)
  }
  # ACR Tasks' run timeout: 300 to 28,800 s (DockerBuildRequest.timeout).
  check_seconds(build_timeout, 300, 28800)
  structure(
    list(base_image = base_image, repo = repo, distro = if (!is.na(distro)) distro,
         serverless_tarball = serverless_tarball, build_timeout = as.numeric(build_timeout)),
    class = "serverless_runtime_options"
  )
}

# Images known to have R at `Rscript` (Docker Hub names, with or without a registry).
r_image_repositories <- c("rocker/r-ver", "rocker/r-base", "rocker/tidyverse", "rocker/verse",
                          "rocker/geospatial", "rocker/ml", "rocker/ml-verse", "rocker/cuda",
                          "rocker/shiny", "rocker/shiny-verse", "rocker/rstudio", "r-base",
                          "library/r-base", "rhub/r-minimal", "rstudio/r-base", "posit/r-base")

# The base image must have R, of the session's major.minor where its tag says.
check_base_image <- function(base_image, base_has_r, call = rlang::caller_env()) {
  if (!grepl("^[A-Za-z0-9._/:@-]+$", base_image)) {
    serverless_abort("{.arg base_image} {.val {base_image}} is not an image reference.", "input", call = call)
  }
  name <- sub("@.*$", "", base_image)
  tag <- if (grepl(":[^/]+$", name)) sub("^.*:", "", name) else "latest"
  repository <- sub(":[^/]+$", "", name)
  repository <- sub("^[^/]+[.:][^/]*/", "", repository) # a registry host
  if (!base_has_r && !(repository %in% r_image_repositories)) {
    serverless_abort(
      c("{.arg base_image} {.val {base_image}} is not an image with R.",
        i = "Use one of {.val {head(r_image_repositories, 4)}} (by default {.val rocker/r-ver} of your R version).",
        i = "If this image has R at {.code Rscript}, set {.code base_has_r = TRUE}."),
      "input", call = call
    )
  }
  if (!(repository %in% r_image_repositories)) return(invisible()) # its tag says nothing of R
  session <- paste(R.version$major, strsplit(R.version$minor, ".", fixed = TRUE)[[1]][1], sep = ".")
  image_r <- regmatches(tag, regexpr("^[0-9]+\\.[0-9]+", tag))
  if (length(image_r) && !identical(image_r, session)) {
    serverless_abort(
      c("{.arg base_image} {.val {base_image}} has R {image_r}, but this session runs R {session}.",
        i = "Models are saved and packages pinned with this R: use an image of R {session}."),
      "input", call = call
    )
  }
}

# The Ubuntu release under a rocker/r-ver image (rocker-versioned2: R 4.0-4.1 on focal,
# 4.2-4.4 on jammy, 4.5 and later on noble); NA where not known.
base_image_distro <- function(base_image) {
  m <- regmatches(base_image, regexec("^(docker\\.io/)?rocker/r-ver:([0-9]+)\\.([0-9]+)", base_image))[[1]]
  if (!length(m)) return(NA_character_)
  v <- as.integer(m[3]) * 100 + as.integer(m[4])
  if (v >= 405) "noble" else if (v >= 402) "jammy" else if (v >= 400) "focal" else NA_character_
}

# A serveRless source tarball at the installed version, or an input error.
check_serverless_tarball <- function(path, call = rlang::caller_env()) {
  if (!file.exists(path)) {
    serverless_abort(c("{.arg serverless_tarball} {.file {path}} does not exist.",
                       i = "Make one with {.code R CMD build} in the serveRless sources, or leave it {.code NULL}."),
                     "input", call = call)
  }
  desc <- tryCatch({
    files <- utils::untar(path, list = TRUE, tar = "internal")
    entry <- grep("^[^/]+/DESCRIPTION$", files, value = TRUE)[1]
    dir <- withr::local_tempdir()
    utils::untar(path, files = entry, exdir = dir, tar = "internal")
    read.dcf(file.path(dir, entry), fields = c("Package", "Version"))[1, ]
  }, error = function(e) NULL, warning = function(w) NULL)
  if (is.null(desc) || !identical(unname(desc[["Package"]]), "serveRless")) {
    serverless_abort(c("{.arg serverless_tarball} {.file {path}} is not a serveRless source tarball.",
                       i = "Make one with {.code R CMD build} in the serveRless sources, or leave it {.code NULL}."),
                     "input", call = call)
  }
  if (!identical(unname(desc[["Version"]]), serverless_version())) {
    serverless_abort(
      c("{.arg serverless_tarball} holds serveRless {desc[['Version']]}, but {serverless_version()} is installed.",
        i = "The image must run the serveRless that wrote the bundle: use a tarball of {serverless_version()}."),
      "input", call = call)
  }
  normalizePath(path)
}

# The copy of serveRless's source kept at install time (tools/config.R), checked
# against the sha256 recorded next to it.
installed_source_tarball <- function(call = rlang::caller_env()) {
  dir <- system.file("serveRless-source", package = "serveRless")
  sums <- if (nzchar(dir)) file.path(dir, "SHA256") else ""
  if (!nzchar(dir) || !file.exists(sums)) {
    serverless_abort(
      c("This serveRless was installed without a copy of its source, which the base image is built from.",
        i = "Install it again from its sources (GNU tar is needed), or pass {.code runtime_options(serverless_tarball =)}."),
      "setup", call = call
    )
  }
  line <- strsplit(readLines(sums, n = 1, warn = FALSE), "  ", fixed = TRUE)[[1]]
  path <- file.path(dir, line[2])
  actual <- if (file.exists(path)) rust_check(rs_file_sha256(path)) else ""
  if (!identical(actual, line[1])) {
    serverless_abort(
      c("The copy of serveRless's source in {.file {dir}} does not match its recorded sha256.",
        i = "Install serveRless again."),
      "integrity", call = call
    )
  }
  path
}

# ACI's limits for one container group, checked before any network call.
check_resources <- function(cpu, memory_gb, call = rlang::caller_env()) {
  number <- function(x) is.numeric(x) && length(x) == 1 && !is.na(x)
  if (!number(cpu) || cpu < 1 || cpu > 4) {
    serverless_abort(
      c("{.arg cpu} must be between 1 and 4 cores (Azure Container Instances' limit), not {.val {format(cpu)}}."),
      "input", call = call
    )
  }
  if (!number(memory_gb) || memory_gb < 0.5 || memory_gb > 16 ||
      abs(memory_gb * 10 - round(memory_gb * 10)) > 1e-6) {
    serverless_abort(
      c("{.arg memory_gb} must be 0.5 to 16 GB in steps of 0.1 (Azure Container Instances' limit), not {.val {format(memory_gb)}}."),
      "input", call = call
    )
  }
  invisible()
}

check_arm_target <- function(target, call = rlang::caller_env()) {
  if (is.null(target$subscription) || is.null(target$resource_group) || is.null(target$location)) {
    serverless_abort(
      c("{.arg target} has no subscription, resource group or location.",
        i = "Use {.fn az_target} with all three, or {.fn local_azure}."),
      "input", call = call
    )
  }
}

# The runtime spec: R major.minor; serveRless's own dependencies (for the base image)
# and the model's packages beyond them (for the runtime image), each with all their
# dependencies in install order at the installed versions; the system libraries the
# model's packages need where known; the serveRless source tarball.
runtime_spec <- function(model_packages, runtime, tarball) {
  closures <- image_packages(model_packages)
  base <- closures$base
  model <- closures$model
  pins <- function(pkgs) lapply(pkgs, function(p) list(name = p, version = package_version_string(p)))
  list(
    r_version = paste(R.version$major, strsplit(R.version$minor, ".", fixed = TRUE)[[1]][1], sep = "."),
    base_image = runtime$base_image,
    repo = runtime$repo,
    distro = runtime$distro,
    packages = pins(model),
    base_packages = pins(base),
    system_libraries = as.list(sort(unique(unlist(system_libraries[intersect(model, names(system_libraries))],
                                                  use.names = FALSE)))),
    serverless_version = serverless_version(),
    serverless_tarball = list(file_name = basename(tarball),
                              sha256 = rust_check(rs_file_sha256(tarball)))
  )
}

# The packages of the two images: serveRless's dependencies (base image) and the
# model's packages beyond them (runtime image), each closed over their dependencies.
image_packages <- function(model_packages) {
  base <- package_closure(package_imports("serveRless"))
  list(base = base, model = setdiff(package_closure(names(model_packages)), base))
}

# Non-base packages a package needs to run (Depends, Imports, LinkingTo).
package_imports <- function(pkg) {
  desc <- utils::packageDescription(pkg, fields = c("Depends", "Imports", "LinkingTo"))
  fields <- unlist(desc[!is.na(desc)], use.names = FALSE)
  if (!length(fields)) return(character())
  deps <- trimws(sub("\\(.*$", "", unlist(strsplit(fields, ","))))
  setdiff(deps[nzchar(deps)], c("R", base_packages))
}

# `pkgs` and everything they need, dependencies before their users.
package_closure <- function(pkgs) {
  done <- character()
  visit <- function(p, path) {
    if (p %in% done || p %in% path) return()
    if (!nzchar(system.file(package = p))) {
      serverless_abort("{.pkg {p}} is needed by {.pkg {path[length(path)]}} but is not installed.", "input")
    }
    for (d in package_imports(p)) visit(d, c(path, p))
    done <<- c(done, p)
  }
  for (p in sort(pkgs)) visit(p, character())
  done
}

# System libraries (Debian/Ubuntu) that packages need to build from source, where
# known. Packages not listed need none beyond the base image's toolchain.
system_libraries <- list(
  curl = "libcurl4-openssl-dev", openssl = "libssl-dev", xml2 = "libxml2-dev",
  git2r = "libgit2-dev", sf = c("libgdal-dev", "libgeos-dev", "libproj-dev", "libudunits2-dev"),
  terra = c("libgdal-dev", "libgeos-dev", "libproj-dev"), units = "libudunits2-dev",
  magick = "libmagick++-dev", stringi = "libicu-dev", nloptr = "cmake",
  RPostgres = "libpq-dev", odbc = "unixodbc-dev", rJava = "default-jdk", V8 = "libnode-dev",
  textshaping = c("libharfbuzz-dev", "libfribidi-dev"), ragg = c("libpng-dev", "libjpeg-dev", "libtiff-dev"),
  systemfonts = c("libfontconfig1-dev", "libfreetype-dev"), gert = "libgit2-dev",
  rsvg = "librsvg2-dev", pdftools = "libpoppler-cpp-dev", fftw = "libfftw3-dev",
  gsl = "libgsl-dev", Rmpfr = "libmpfr-dev", gmp = "libgmp-dev", jqr = "libjq-dev",
  protolite = "libprotobuf-dev", redux = "libhiredis-dev", arrow = "cmake",
  xgboost = "cmake", lightgbm = "cmake", keras = "python3", tensorflow = "python3"
)

read_template <- function(file) {
  path <- system.file("templates", file, package = "serveRless")
  if (!nzchar(path)) {
    serverless_abort("The template {.file {file}} is missing from the installed package.", "internal")
  }
  paste(readLines(path, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
}

drop_nulls <- function(x) x[!vapply(x, is.null, logical(1))]

new_deployment <- function(record, target, built = NA, model_reused = NA, bytes_sent = NA,
                           arm_calls = NA, plan = NULL, build = NULL, dockerfile = NULL,
                           base_built = NA, base_build = NULL, base_dockerfile = NULL,
                           ptype = NULL) {
  structure(
    list(
      name = record$name,
      model_version = record$model_version,
      model_sha256 = record$model_sha256,
      image = record$image,
      base_image = record$base_image %||% "",
      registry = record$registry,
      runtime_hash = record$runtime_hash,
      cpu = record$cpu,
      memory_gb = record$memory_gb,
      identity = record$identity_id,
      created = parse_time(record$created),
      updated = parse_time(record$updated),
      built = built,
      model_reused = model_reused,
      bytes_sent = bytes_sent,
      arm_calls = arm_calls,
      plan = plan,
      build = build,
      dockerfile = dockerfile,
      base_built = base_built,
      base_build = base_build,
      base_dockerfile = base_dockerfile,
      # Given at deploy time; else rebuilt from the record (older records have none).
      ptype = ptype %||% ptype_from_description(record$ptype),
      record = record,
      target = target
    ),
    class = "serverless_deployment"
  )
}

new_plan <- function(items, what) {
  col <- function(f) vapply(items, f, "")
  structure(
    list(
      what = what,
      items = data.frame(
        action = col(function(i) i$action),
        kind = col(function(i) i$kind),
        id = col(function(i) i$id),
        detail = col(function(i) i$detail),
        stringsAsFactors = FALSE
      )
    ),
    class = "serverless_plan"
  )
}

#' The build log of a deployment's image
#'
#' The log of the ACR Tasks build of a deployment's runtime image (or, with
#' `base = TRUE`, of its base image), as kept in the target's container at
#' `builds/<repository>/<tag>.log` when the image was built: for the deploy that built
#' it, and for every later deployment that uses the same image.
#'
#' @param dep A `serverless_deployment`, from [deploy_model()] or [get_deployment()].
#' @param base `TRUE` for the base image's log (R and serveRless).
#' @return A `serverless_log`: a character vector of lines, printed as they are.
#' @examples
#' \donttest{
#' if (nzchar(Sys.which("azurite-blob"))) {
#' target <- local_azure()
#' dep <- deploy_model(lm(mpg ~ wt, data = mtcars), "mpg", target)
#' tail(deploy_log(dep))
#' deploy_log(dep, base = TRUE)
#' }
#' }
#' @export
deploy_log <- function(dep, base = FALSE) {
  if (!inherits(dep, "serverless_deployment")) {
    serverless_abort("{.arg dep} must be a deployment from {.fn deploy_model} or {.fn get_deployment}.", "input")
  }
  check_flag(base)
  image <- if (base) dep$base_image else dep$image
  if (!nzchar(image %||% "")) {
    serverless_abort("This deployment was recorded before base images; deploy it again.", "input")
  }
  ref <- sub("^[^/]+/", "", image) # <repository>:<tag>
  path <- sprintf("%s/builds/%s/%s.log", dep$target$container, sub(":.*$", "", ref), sub("^.*:", "", ref))
  file <- withr::local_tempfile(fileext = ".log")
  blob_download(dep$target, path, file)
  structure(readLines(file, warn = FALSE, encoding = "UTF-8"), class = "serverless_log")
}

#' @export
print.serverless_log <- function(x, ...) {
  cat(unclass(x), sep = "\n")
  invisible(x)
}

#' @export
#' @importFrom utils tail
tail.serverless_log <- function(x, n = 6L, ...) {
  structure(utils::tail(unclass(x), n, ...), class = "serverless_log")
}
