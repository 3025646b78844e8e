# The RStudio addin's gadget: what it lists (no browser), its server logic (Shiny's
# test server), and the whole flow in headless Chromium against the local Azure.

skip_if_no_gadget <- function() {
  skip_if_not_installed("shiny")
  skip_if_not_installed("miniUI")
}

test_that("models are objects with a predict() method; data frames, functions and targets are not", {
  env <- new.env()
  fits <- fit_models()
  env$fit <- fits$lm
  env$logit <- fits$glm
  env$cars <- fits$data
  env$f <- function(x) x
  env$n <- 1:3
  env$target <- azurite_az_target()
  models <- serveRless:::addin_models(env)
  expect_equal(unname(models), c("fit", "logit"))
  expect_equal(names(models), c("fit <lm>", "logit <glm>"))
  expect_length(serveRless:::addin_models(new.env()), 0)
})

test_that("targets are the serverless_target objects plus a new local Azure, labelled without secrets", {
  env <- new.env()
  env$prod <- azurite_az_target(resource_group = "rg-models")
  env$local <- test_target()
  env$fit <- fit_models()$lm
  targets <- serveRless:::addin_targets(env)
  expect_equal(unname(targets), c("local", "prod", ".local_azure"))
  expect_equal(names(targets), c("local: local Azure",
                                 "prod: Azure, rg-models (westeurope), storage devstoreaccount1",
                                 "A new local Azure"))
  expect_false(any(grepl(serveRless:::azurite_key, names(targets), fixed = TRUE)))
})

test_that("names are suggested from object names when valid, and the choices are checked before any call", {
  expect_equal(serveRless:::suggest_model_name("Fit_LM.2"), "fit-lm-2")
  expect_equal(serveRless:::suggest_model_name("m"), "")
  env <- new.env()
  env$fit <- fit_models()$lm
  env$target <- azurite_az_target()
  problem <- function(model = "fit", name = "mpg", target = "target") {
    serveRless:::addin_problem(list(model = model, name = name, target = target), env)
  }
  expect_null(problem())
  expect_null(problem(target = ".local_azure"))
  expect_equal(problem(model = ""), "Choose a model.")
  expect_match(problem(model = "gone"), "`gone` is gone")
  expect_equal(problem(name = ""), "Give the model a name.")
  expect_match(problem(name = "Mpg"), "model name `Mpg` is invalid")
  expect_equal(problem(target = ""), "Choose a target.")
  expect_equal(serveRless:::addin_code(list(model = "fit", name = "mpg", target = ".local_azure")),
               c("target <- local_azure()", "deploy_model(fit, \"mpg\", target, dry_run = TRUE)",
                 "dep <- deploy_model(fit, \"mpg\", target)"))
})

test_that("deploy_gadget() needs an environment", {
  skip_if_no_gadget()
  expect_error(deploy_gadget(list()), class = "serverless_error_input")
  expect_s3_class(deploy_gadget(new.env()), "shiny.appobj")
})

test_that("the gadget's Deploy first shows the plan, deploys on the second click, and shows errors", {
  skip_if_no_gadget()
  target <- test_target()
  env <- new.env()
  env$fit <- fit_models()$lm
  env$target <- target
  shiny::testServer(deploy_gadget(env), {
    session$setInputs(model = "fit", name = "Bad", target = "target")
    expect_match(output$code, "model name `Bad` is invalid")
    session$setInputs(plan = 1)
    expect_match(output$plan_text, "^Error: model name `Bad` is invalid")

    session$setInputs(name = "addin-server")
    expect_match(output$code, "dep <- deploy_model(fit, \"addin-server\", target)", fixed = TRUE)
    session$setInputs(done = 1) # no plan yet: shows it, deploys nothing
    expect_match(output$plan_text, "deploy_model(name = \"addin-server\")", fixed = TRUE)
    expect_match(output$plan_text, "Review the plan, then click Deploy again")
    expect_null(get_deployment("addin-server", target))

    session$setInputs(done = 2)
    expect_match(output$result, "<serverless_deployment> addin-server", fixed = TRUE)
    expect_match(output$log, "storing model")
    expect_false(is.null(get_deployment("addin-server", target)))
    expect_match(output$plan_text, "Deployed as planned")
    # The plan is spent: Deploy again shows a new one (nothing new to create) first.
    session$setInputs(done = 3)
    expect_match(output$plan_text, "Review the plan, then click Deploy again")
    expect_match(output$plan_text, " 0 create,", fixed = TRUE)
    expect_equal(nrow(model_versions("addin-server", target)), 1)
    # An error is shown with the choices it is about, and goes when they change.
    env$fit <- structure(list(), class = "not_a_model")
    session$setInputs(plan = 2)
    expect_match(output$plan_text, "^Error: No installed package has a `predict\\(\\)` method")
    session$setInputs(name = "addin-other")
    expect_match(output$plan_text, "^Click Plan")
  })
})

test_that("the gadget's \"new local Azure\" is started once, on first use, and deployed to", {
  skip_if_no_gadget()
  env <- new.env()
  env$fit <- fit_models()$lm
  # The gadget starts it for the R session (global deferred events); stop it here.
  withr::defer(withr::deferred_run(globalenv()))
  shiny::testServer(deploy_gadget(env), {
    session$setInputs(model = "fit", name = "fit", target = ".local_azure")
    expect_match(output$code, "target <- local_azure()", fixed = TRUE)
    session$setInputs(plan = 1)
    expect_match(output$plan_text, "+ create    registry", fixed = TRUE)
    expect_match(output$log, "-- Starting a local Azure", fixed = TRUE)
    session$setInputs(done = 1)
    expect_match(output$result, "<serverless_deployment> fit", fixed = TRUE)
    # Deployed to the local Azure the plan started, not to a second one.
    expect_equal(sum(grepl("Starting a local Azure", state$log, fixed = TRUE)), 1)
    started <- state$deployment$target
    expect_identical(started$kind, "local")
    expect_equal(get_deployment("fit", started)$model_version, state$deployment$model_version)
  })
})

# A target for the local Azure that another R process can rebuild with az_target(),
# as a user would for a real account (the local Azure itself lives in this process).
child_target_recipe <- function(target) {
  cred <- serveRless:::target_credential(target)
  list(blob_endpoint = target$blob_endpoint, storage_key = serveRless:::azurite_key,
       ca_pem = target$secrets$ca_pem, subscription = target$subscription,
       resource_group = target$resource_group, location = target$location,
       arm_endpoint = target$arm_endpoint, authority_host = target$authority_host,
       tenant = cred$tenant, client_id = cred$client_id, client_secret = serveRless:::unseal(cred$secrets$client_secret))
}

# Runs in a callr process: the gadget's app on loopback, with a fitted lm, a data
# frame and the target in its environment.
run_gadget_app <- function(recipe) {
  library(serveRless)
  target <- az_target(
    subscription = recipe$subscription, resource_group = recipe$resource_group,
    location = recipe$location, storage_account = "devstoreaccount1",
    blob_endpoint = recipe$blob_endpoint, storage_key = recipe$storage_key,
    credential = az_credential("client_secret", tenant = recipe$tenant,
                               client_id = recipe$client_id, client_secret = recipe$client_secret)
  )
  target$secrets$ca_pem <- recipe$ca_pem
  target$arm_endpoint <- recipe$arm_endpoint
  target$authority_host <- recipe$authority_host
  env <- new.env()
  env$cars <- datasets::mtcars
  env$fit <- stats::lm(mpg ~ wt + hp, data = env$cars)
  env$target <- target
  # port = NULL: a free one, printed as "Listening on http://127.0.0.1:<port>".
  shiny::runApp(deploy_gadget(env), host = "127.0.0.1", port = NULL, launch.browser = FALSE)
}

test_that("the addin in headless Chromium: pick a model, name and target, plan, deploy", {
  skip_if_no_gadget()
  skip_if_not_installed("curl")
  skip_if_not_installed("jsonlite")
  skip_if_not_installed("callr")
  skip_if(!nzchar(Sys.which("chromedriver")) || !nzchar(Sys.which("chromium")),
          "needs chromium and chromedriver")
  target <- local_azure() # its own, so this deploy builds the runtime image too
  name <- "mpg-addin"

  app <- callr::r_bg(run_gadget_app, args = list(child_target_recipe(target)),
                     stdout = "|", stderr = "2>&1")
  withr::defer(if (app$is_alive()) app$kill())
  seen <- wait_for_line(app, "Listening on http://127.0.0.1:", timeout = 60)
  url <- regmatches(seen, regexpr("http://127\\.0\\.0\\.1:[0-9]+", seen))[[1]]

  browser <- local_browser(local_chromedriver())
  wd_navigate(browser, url)
  models <- wd_wait_text(browser, "#model", "fit <lm>")
  expect_false(grepl("cars", models, fixed = TRUE))
  targets <- wd_text(browser, "#target")
  expect_match(targets, "target: Azure, serverless-local (westeurope), storage devstoreaccount1", fixed = TRUE)
  expect_match(targets, "A new local Azure", fixed = TRUE)

  # Pick: the name is suggested from the object's; a bad one is refused before any call.
  wd_click(browser, "#model option[value='fit']")
  wd_wait(function() identical(wd_value(browser, "#name"), "fit"), "the suggested name")
  wd_type(browser, "#name", "Mpg")
  wd_wait_text(browser, "#code", "model name `Mpg` is invalid")
  wd_type(browser, "#name", name)
  wd_click(browser, "#target option[value='target']")
  wd_wait_text(browser, "#code", sprintf("dep <- deploy_model(fit, \"%s\", target)", name))

  # Plan.
  wd_click(browser, "#plan")
  plan <- wd_wait_text(browser, "#plan_text", sprintf("deploy_model(name = \"%s\")", name), timeout = 60)
  expect_match(plan, "+ create    model version", fixed = TRUE)
  expect_match(plan, "+ create    image", fixed = TRUE)
  expect_match(plan, sprintf("+ create    blob            serverless/deployments/%s.json", name), fixed = TRUE)
  expect_null(get_deployment(name, target)) # a plan writes nothing

  # Deploy (the gadget's confirm button), then wait for the deployment it shows.
  wd_click(browser, "#done")
  result <- wd_wait_text(browser, "#result", sprintf("<serverless_deployment> %s", name), timeout = 120)
  expect_match(result, "built (ACR Tasks run", fixed = TRUE)
  expect_match(wd_text(browser, "#log"), "building serverless-runtime:", fixed = TRUE)
  wd_wait(function() wd_count(browser, ".shiny-notification") == 0, "the progress bar to close")
  png <- wd_screenshot(browser, file.path(test_path(), "_screenshots", "addin-deploy.png"))
  message("Screenshot of the deployed gadget: ", normalizePath(png))
  expect_gt(file.size(png), 10000)
  expect_identical(readBin(png, "raw", 8), as.raw(c(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)))

  # The deployment exists, as the test process sees it.
  dep <- get_deployment(name, target)
  expect_s3_class(dep, "serverless_deployment")
  versions <- model_versions(name, target)
  expect_equal(nrow(versions), 1)
  expect_equal(dep$model_version, versions$version)
  expect_match(result, dep$model_version, fixed = TRUE)
  b <- load_model(name, target)
  expect_equal(predict(b$model, mtcars), predict(lm(mpg ~ wt + hp, data = mtcars), mtcars))
  expect_true(app$is_alive()) # the gadget stays open until closed
})
