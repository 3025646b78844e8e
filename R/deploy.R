# deploy_model(): store the model and make sure its runtime image exists.

#' Deploy a model: its bundle in Blob Storage, its runtime image in the registry
#'
#' `deploy_model()` stores the model as a new version (see [store_model()]), makes sure
#' a scoring runtime image for it exists in the target's Azure Container Registry, and
#' records the deployment in `deployments/<name>.json` in the target's container.
#'
#' The runtime image holds R, the packages the model needs at the versions installed
#' in your library (with their dependencies), and serveRless. Its tag is the hash of
#' that spec, so models that need the same packages share one image and a new model
#' version normally builds nothing. Images are built in the cloud by ACR Tasks from a
#' Dockerfile rendered from the package's template (no local Docker needed); the build
#' log streams into the console.
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
#' @return A `serverless_deployment` (or a `serverless_plan` for a dry run).
#'   `get_deployment()` returns the deployment, or `NULL` if there is none.
#' @seealso [runtime_options()], [store_model()]
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
                         runtime = runtime_options()) {
  check_string(name)
  rust_check(rs_check_model_name(name))
  check_target(target)
  check_flag(dry_run)
  check_resources(cpu, memory_gb)
  if (!inherits(runtime, "serverless_runtime_options")) {
    serverless_abort("{.arg runtime} must come from {.fn runtime_options}.", "input")
  }
  check_arm_target(target)
  bundle <- model_bundle(model, predict_fun, ptype, packages, require_predict = TRUE)
  spec <- runtime_spec(bundle$packages, runtime)
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
    install_script = read_template("install-pinned.R"),
    serverless_tarball_path = runtime$serverless_tarball,
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
                 build = out$build, dockerfile = out$dockerfile)
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
#' @param base_image The image to start from. By default the rocker/r-ver image of
#'   your R version (e.g. `rocker/r-ver:4.2.2`).
#' @param repo The CRAN-like repository the pinned package versions are installed
#'   from (current versions from `src/contrib`, older ones from its `Archive`). Use a
#'   dated snapshot to make builds reproducible.
#' @param serverless_repo Where the image gets serveRless at your exact version.
#'   Defaults to `repo`.
#' @param serverless_tarball A serveRless source tarball to put in the build context
#'   instead (e.g. from `R CMD build`); it must be your installed version.
#' @param build_timeout Seconds a build may take.
#' @return A `serverless_runtime_options` list.
#' @examples
#' runtime_options(repo = "https://packagemanager.posit.co/cran/2024-06-03")
#' @export
runtime_options <- function(base_image = NULL, repo = "https://packagemanager.posit.co/cran/latest",
                            serverless_repo = repo, serverless_tarball = NULL,
                            build_timeout = 3600) {
  if (is.null(base_image)) {
    base_image <- paste0("rocker/r-ver:", R.version$major, ".", R.version$minor)
  }
  check_string(base_image)
  check_string(repo)
  check_string(serverless_repo)
  if (!is.null(serverless_tarball)) {
    check_string(serverless_tarball)
    if (!file.exists(serverless_tarball)) {
      serverless_abort(c("{.arg serverless_tarball} {.file {serverless_tarball}} does not exist.",
                         i = "Make one with {.code R CMD build} in the serveRless sources, or leave it {.code NULL}."),
                       "input")
    }
    serverless_tarball <- normalizePath(serverless_tarball)
  }
  if (!is.numeric(build_timeout) || length(build_timeout) != 1 || is.na(build_timeout) ||
      build_timeout < 60) {
    serverless_abort("{.arg build_timeout} must be a number of seconds, at least 60.", "input")
  }
  structure(
    list(base_image = base_image, repo = repo, serverless_repo = serverless_repo,
         serverless_tarball = serverless_tarball, build_timeout = as.numeric(build_timeout)),
    class = "serverless_runtime_options"
  )
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

# The runtime spec: R major.minor, the model's packages and serveRless's own, with all
# their dependencies in install order at the installed versions, the system libraries
# they need where known, and where serveRless comes from.
runtime_spec <- function(model_packages, runtime) {
  own <- package_imports("serveRless")
  closure <- package_closure(unique(c(own, names(model_packages))))
  tarball <- NULL
  if (!is.null(runtime$serverless_tarball)) {
    tarball <- list(file_name = basename(runtime$serverless_tarball),
                    sha256 = rust_check(rs_file_sha256(runtime$serverless_tarball)))
  }
  list(
    r_version = paste(R.version$major, strsplit(R.version$minor, ".", fixed = TRUE)[[1]][1], sep = "."),
    base_image = runtime$base_image,
    repo = runtime$repo,
    packages = lapply(closure, function(p) list(name = p, version = package_version_string(p))),
    system_libraries = as.list(sort(unique(unlist(system_libraries[intersect(closure, names(system_libraries))],
                                                  use.names = FALSE)))),
    serverless_version = serverless_version(),
    serverless_repo = runtime$serverless_repo,
    serverless_tarball = tarball
  )
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
                           arm_calls = NA, plan = NULL, build = NULL, dockerfile = NULL) {
  structure(
    list(
      name = record$name,
      model_version = record$model_version,
      model_sha256 = record$model_sha256,
      image = record$image,
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
