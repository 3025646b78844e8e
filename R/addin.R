# The RStudio addin: a gadget that deploys a model from the global environment.

#' Deploy a model from RStudio
#'
#' `deploy_addin()` is the RStudio addin "Deploy a model" (Addins menu). It opens a
#' gadget that lists the fitted models in the global environment, lets you pick one,
#' give it a name and choose a target, shows what [deploy_model()] would do (its
#' `dry_run` plan), and deploys when you confirm, with progress. The target is any
#' `serverless_target` in the environment (from [az_target()] or [local_azure()]), or a
#' new local Azure started when you choose it. The gadget also shows the R code that does
#' the same, so the deployment can be repeated from a script.
#'
#' A model is an object whose class has a `predict()` method (or an S4 object of a
#' package's class), the rule [deploy_model()] itself applies; data frames and
#' functions never are. If text is selected in the editor and names a model, that model
#' is picked. Deploy asks for the plan of the current choices first: a first click
#' shows it, a second deploys. A new local Azure lives for the rest of the R session.
#'
#' `deploy_gadget()` builds the gadget's Shiny app, to run it outside RStudio (e.g. with
#' [shiny::runApp()] in a browser) or in tests.
#'
#' @param envir Environment to find models and targets in.
#' @param model Name of the model to pick first, or `NULL`.
#' @return `deploy_addin()`: the last `serverless_deployment` made in the gadget, or
#'   `NULL`, invisibly, when the gadget is closed. `deploy_gadget()`: a
#'   [shiny::shinyApp()] object.
#' @seealso [deploy_model()]
#' @examples
#' if (interactive()) {
#'   fit <- lm(mpg ~ wt + hp, data = mtcars)
#'   target <- local_azure()
#'   dep <- deploy_addin()
#' }
#' \donttest{
#' if (requireNamespace("shiny", quietly = TRUE) &&
#'     requireNamespace("miniUI", quietly = TRUE)) {
#'   env <- new.env()
#'   env$fit <- lm(mpg ~ wt + hp, data = mtcars)
#'   app <- deploy_gadget(env)
#'   # shiny::runApp(app) opens it in a browser
#' }
#' }
#' @export
deploy_addin <- function(envir = globalenv()) {
  app <- deploy_gadget(envir, model = editor_selection())
  viewer <- shiny::dialogViewer("Deploy a model", width = 960, height = 760)
  # Close stops the gadget without an error: closing after a deploy is the normal end.
  invisible(shiny::runGadget(app, viewer = viewer, stopOnCancel = FALSE))
}

#' @rdname deploy_addin
#' @export
deploy_gadget <- function(envir = globalenv(), model = NULL) {
  rlang::check_installed(c("shiny", "miniUI"), reason = "to deploy models from a gadget.")
  if (!is.environment(envir)) {
    serverless_abort("{.arg envir} must be an environment, not {.cls {class(envir)[1]}}.", "input")
  }
  models <- addin_models(envir)
  selected <- if (isTRUE(model %in% models)) model else ""
  # A placeholder first: nothing is deployed anywhere until both are chosen.
  model_choices <- c("Choose a model" = "", models)
  target_choices <- c("Choose a target" = "", addin_targets(envir))

  ui <- miniUI::miniPage(
    miniUI::gadgetTitleBar(
      "Deploy a model",
      left = miniUI::miniTitleBarCancelButton("cancel", "Close"),
      right = miniUI::miniTitleBarButton("done", "Deploy", primary = TRUE)
    ),
    miniUI::miniContentPanel(
      shiny::fluidRow(
        shiny::column(
          4,
          shiny::selectInput("model", "Model", model_choices, selected = selected,
                             selectize = FALSE, width = "100%"),
          if (!length(models)) shiny::helpText("No fitted models in the environment."),
          shiny::textInput("name", "Name", placeholder = "3-63 lowercase letters, digits, dashes",
                           width = "100%"),
          shiny::selectInput("target", "Target", target_choices, selectize = FALSE, width = "100%"),
          shiny::actionButton("plan", "Plan", class = "btn-default")
        ),
        shiny::column(
          8,
          shiny::tags$h5("R code"),
          shiny::verbatimTextOutput("code"),
          shiny::tags$h5("Plan (dry run)"),
          shiny::verbatimTextOutput("plan_text"),
          shiny::tags$h5("Deployment"),
          shiny::verbatimTextOutput("result"),
          shiny::tags$h5("Log"),
          shiny::verbatimTextOutput("log")
        )
      ),
      # Plans hold long Azure ids: scroll them rather than wrap them.
      shiny::tags$style(paste("#plan_text, #result, #log { white-space: pre; overflow-x: auto; }",
                              "#log { max-height: 15em; overflow-y: auto; }"))
    )
  )

  server <- function(input, output, session) {
    # `planned`: the choices the plan is for; `spent`: that plan has been deployed.
    # `error`: the last error and the choices it is about.
    state <- shiny::reactiveValues(plan = NULL, planned = NULL, spent = FALSE, deployment = NULL,
                                   error = NULL, note = NULL, log = character())
    new_local <- NULL # the local Azure this gadget started, reused by later clicks

    choice <- shiny::reactive(
      list(model = input$model, name = trimws(input$name), target = input$target)
    )

    # Suggest a name from the object's, unless one has been typed.
    shiny::observeEvent(input$model, {
      if (nzchar(input$model) && !nzchar(trimws(input$name))) {
        shiny::updateTextInput(session, "name", value = suggest_model_name(input$model))
      }
    })

    output$code <- shiny::renderText({
      ch <- choice()
      paste(addin_problem(ch, envir) %||% addin_code(ch), collapse = "\n")
    })
    output$plan_text <- shiny::renderText({
      if (!is.null(state$error) && identical(state$error$choice, choice())) {
        return(paste("Error:", state$error$message))
      }
      if (!is.null(state$plan) && identical(state$planned, choice())) {
        paste(c(format(state$plan), state$note), collapse = "\n")
      } else {
        "Click Plan to see what would be created, updated or left unchanged."
      }
    })
    output$result <- shiny::renderText({
      if (is.null(state$deployment)) return("Nothing deployed yet.")
      paste(format(state$deployment), collapse = "\n")
    })
    output$log <- shiny::renderText(paste(utils::tail(state$log, 200), collapse = "\n"))

    # The target chosen, starting the local Azure when that is the choice.
    resolve_target <- function(value) {
      if (!identical(value, new_local_choice)) {
        return(get(value, envir = envir, inherits = FALSE))
      }
      if (is.null(new_local)) {
        # For the session, like `local_azure()` at the console: deployments outlive the gadget.
        new_local <<- with_gadget_progress("Starting a local Azure", state,
                                           local_azure(.local_envir = globalenv()))
      }
      new_local
    }

    show_plan <- function(ch) {
      state$error <- NULL
      state$note <- NULL
      state$plan <- tryCatch({
        problem <- addin_problem(ch, envir)
        if (!is.null(problem)) serverless_abort(cli_escape(problem), "input")
        target <- resolve_target(ch$target)
        model <- get(ch$model, envir = envir, inherits = FALSE)
        with_gadget_progress("Planning", state, deploy_model(model, ch$name, target, dry_run = TRUE))
      }, error = function(e) {
        state$error <- list(message = conditionMessage(e), choice = ch)
        NULL
      })
      state$planned <- if (!is.null(state$plan)) ch
      state$spent <- FALSE
      !is.null(state$plan)
    }

    shiny::observeEvent(input$plan, show_plan(choice()))

    shiny::observeEvent(input$done, {
      ch <- choice()
      # Confirming means confirming a plan: without a current one, show it first.
      if (is.null(state$plan) || !identical(state$planned, ch) || state$spent) {
        if (show_plan(ch)) state$note <- "Review the plan, then click Deploy again to deploy."
        return()
      }
      state$error <- NULL
      dep <- tryCatch({
        target <- resolve_target(ch$target)
        model <- get(ch$model, envir = envir, inherits = FALSE)
        with_gadget_progress(sprintf("Deploying %s", ch$name), state,
                             deploy_model(model, ch$name, target))
      }, error = function(e) {
        state$error <- list(message = conditionMessage(e), choice = ch)
        NULL
      })
      if (!is.null(dep)) {
        state$deployment <- dep
        # Deploying again needs a new plan (it will show what is now unchanged).
        state$spent <- TRUE
        state$note <- "Deployed as planned. Deploy again shows a new plan first."
      }
    })

    shiny::observeEvent(input$cancel, shiny::stopApp(state$deployment))
  }

  shiny::shinyApp(ui, server)
}

# The value of the "new local Azure" choice; object names listed never start with a dot.
new_local_choice <- ".local_azure"

# Fitted models in `envir`, named by their labels: objects whose class has a predict()
# method, or S4 objects of a package's class (the rule of model_packages()).
addin_models <- function(envir) {
  objects <- ls(envir, sorted = TRUE)
  classes <- vapply(objects, function(name) {
    x <- tryCatch(get(name, envir = envir, inherits = FALSE), error = function(e) NULL)
    if (is_fitted_model(x)) class(x)[1] else NA_character_
  }, "")
  keep <- !is.na(classes)
  stats::setNames(objects[keep], sprintf("%s <%s>", objects[keep], classes[keep]))
}

is_fitted_model <- function(x) {
  if (is.null(x) || is.data.frame(x) || is.function(x) || is.environment(x)) {
    return(FALSE)
  }
  if (isS4(x)) {
    return(!is.null(attr(class(x), "package")))
  }
  any(vapply(class(x), function(cls) !is.null(utils::getS3method("predict", cls, optional = TRUE)),
             logical(1)))
}

# Targets in `envir` plus a new local Azure, named by secret-free labels.
addin_targets <- function(envir) {
  objects <- ls(envir, sorted = TRUE)
  is_target <- vapply(objects, function(name) {
    inherits(tryCatch(get(name, envir = envir, inherits = FALSE), error = function(e) NULL),
             "serverless_target")
  }, logical(1))
  objects <- objects[is_target]
  labels <- vapply(objects, function(name) {
    target_label(name, get(name, envir = envir, inherits = FALSE))
  }, "")
  c(stats::setNames(objects, labels), stats::setNames(new_local_choice, "A new local Azure"))
}

target_label <- function(name, target) {
  if (identical(target$kind, "local")) {
    sprintf("%s: local Azure", name)
  } else {
    sprintf("%s: Azure, %s (%s), storage %s", name, target$resource_group, target$location,
            target$storage_account)
  }
}

# What is missing or wrong in the choices, as text, or NULL. No network calls.
addin_problem <- function(ch, envir) {
  if (!nzchar(ch$model %||% "")) return("Choose a model.")
  if (!exists(ch$model, envir = envir, inherits = FALSE)) {
    return(sprintf("`%s` is gone from the environment.", ch$model))
  }
  if (!nzchar(ch$name %||% "")) return("Give the model a name.")
  problem <- tryCatch(rust_check(rs_check_model_name(ch$name)), serverless_error = conditionMessage)
  if (is.character(problem)) return(problem)
  if (!nzchar(ch$target %||% "")) return("Choose a target.")
  if (!identical(ch$target, new_local_choice) && !exists(ch$target, envir = envir, inherits = FALSE)) {
    return(sprintf("`%s` is gone from the environment.", ch$target))
  }
  NULL
}

# The R code that makes the same deployment.
addin_code <- function(ch) {
  sym <- function(x) deparse(as.name(x), backtick = TRUE)
  target <- if (identical(ch$target, new_local_choice)) "target" else sym(ch$target)
  c(if (identical(ch$target, new_local_choice)) "target <- local_azure()",
    sprintf("deploy_model(%s, \"%s\", %s, dry_run = TRUE)", sym(ch$model), ch$name, target),
    sprintf("dep <- deploy_model(%s, \"%s\", %s)", sym(ch$model), ch$name, target))
}

# A valid model name from an object name, or "" when there is none.
suggest_model_name <- function(object) {
  name <- gsub("^-+|-+$", "", gsub("[^a-z0-9]+", "-", tolower(object)))
  ok <- tryCatch({
    rust_check(rs_check_model_name(name))
    TRUE
  }, serverless_error = function(e) FALSE)
  if (ok) name else ""
}

# Evaluates `expr` under a Shiny progress bar whose detail follows the core's progress
# messages; the messages go to the gadget's log instead of the console.
with_gadget_progress <- function(message, state, expr) {
  value <- 0
  state$log <- c(state$log, paste("--", message))
  shiny::withProgress(message = message, value = 0, {
    withCallingHandlers(expr, message = function(m) {
      lines <- strsplit(trimws(conditionMessage(m)), "\n", fixed = TRUE)[[1]]
      state$log <- c(state$log, lines)
      value <<- value + (1 - value) / 5 # the number of steps is not known in advance
      shiny::setProgress(value = value, detail = utils::tail(lines, 1))
      invokeRestart("muffleMessage")
    }, serverless_log_lines = function(l) {
      state$log <- c(state$log, l$lines)
      shiny::setProgress(value = value, detail = utils::tail(l$lines, 1))
    })
  })
}

# The text selected in the RStudio editor, when it could name an object.
editor_selection <- function() {
  if (!requireNamespace("rstudioapi", quietly = TRUE) || !rstudioapi::isAvailable()) {
    return(NULL)
  }
  text <- tryCatch(rstudioapi::getSourceEditorContext()$selection[[1]]$text, error = function(e) "")
  text <- trimws(text %||% "")
  if (nzchar(text)) text
}
