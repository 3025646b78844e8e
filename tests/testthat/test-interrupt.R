# A child R process uploads a large file; the parent interrupts or kills it mid-way.

upload_in_child <- function(target, file, path) {
  callr::r_bg(function(endpoint, key, ca, file, path) {
    library(serveRless)
    target <- az_target("00000000-0000-0000-0000-000000000000", "rg", "westeurope",
                        "devstoreaccount1", blob_endpoint = endpoint, storage_key = key)
    target$secrets$ca_pem <- ca # the local Azure's CA
    # "LANDED" once the first block is in the storage (progress counts landed blocks):
    # the parent interrupts or kills the upload then, mid-way, not after a guessed delay.
    landed <- FALSE
    res <- tryCatch(
      withCallingHandlers(blob_upload(target, file, path), serverless_progress = function(p) {
        if (!landed && p$done > 0) {
          landed <<- TRUE
          cat("LANDED\n")
        }
      }),
      error = function(e) e
    )
    cat("CLASS", class(res)[1], "\n")
  }, args = list(target$blob_endpoint, serveRless:::azurite_key, target$secrets$ca_pem, file, path),
  stdout = "|", stderr = "|")
}

test_that("an interrupt during a long upload returns promptly, committing nothing", {
  target <- test_target()
  big <- sparse_file(1024^3)
  child <- upload_in_child(target, big, "serverless/test-interrupt/big.bin")
  wait_for_line(child, "LANDED", timeout = 60)
  expect_true(child$is_alive())
  sent <- Sys.time()
  child$interrupt()
  out <- wait_for_line(child, "CLASS", timeout = 20)
  returned_after <- as.numeric(difftime(Sys.time(), sent, units = "secs"))
  expect_true(any(grepl("CLASS serverless_error_interrupted", out, fixed = TRUE)),
              info = paste(c(out, child$read_all_error_lines()), collapse = "\n"))
  # "within about a second": a generous bound, the figure itself goes in bench/.
  expect_lt(returned_after, 3)
  child$wait(5000)
  expect_false("serverless/test-interrupt/big.bin" %in% blob_list(target, "serverless/test-interrupt/")$path)
})

test_that("an upload killed mid-way resumes, sending only the missing blocks", {
  target <- test_target()
  big <- sparse_file(1024^3)
  path <- "serverless/test-resume/big.bin"
  child <- upload_in_child(target, big, path)
  wait_for_line(child, "LANDED", timeout = 60)
  child$kill() # SIGKILL: no chance to clean up
  expect_false(path %in% blob_list(target, "serverless/test-resume/")$path)
  out <- blob_upload(target, big, path)
  expect_equal(out$blocks, 256)
  expect_gt(out$blocks_sent, 0)
  expect_lt(out$blocks_sent, out$blocks)
  expect_equal(out$bytes_sent, out$size - (out$blocks - out$blocks_sent) * 4 * 1024^2)
  dest <- withr::local_tempfile()
  down <- blob_download(target, path, dest)
  expect_true(down$verified)
  expect_equal(unname(tools::md5sum(dest)), unname(tools::md5sum(big)))
})

test_that("Ctrl-C in score_now() while its groups start returns promptly; no group is left", {
  dir <- withr::local_tempdir()
  child <- callr::r_bg(function(dir) {
    library(serveRless)
    target <- local_azure(dir = dir)
    dep <- suppressMessages(deploy_model(lm(mpg ~ wt, data = mtcars), "intr", target))
    groups <- function() {
      path <- sprintf("/subscriptions/%s/resourceGroups/%s/providers/Microsoft.ContainerInstance/containerGroups",
                      target$subscription, target$resource_group)
      serveRless:::rust_wait(serveRless:::rs_arm_get(serveRless:::target_arm(target), path, "2023-05-01"))$value
    }
    # Every control-plane call takes 0.3 s longer, so starting 6 groups takes a while.
    local_azure_faults(target, latency = 0.3)
    cat("START\n")
    res <- tryCatch(score_now(dep, newdata = mtcars[, "wt", drop = FALSE], shards = 6),
                    error = function(e) e, interrupt = function(e) e)
    cat("CLASS", class(res)[1], "\n")
    local_azure_faults(target)
    # The groups created before the interrupt are deleted in the background.
    deadline <- Sys.time() + 30
    while (length(groups()) > 0 && Sys.time() < deadline) Sys.sleep(0.2)
    cat("GROUPS", length(groups()), "\n")
  }, args = list(dir), stdout = "|", stderr = "|")
  withr::defer(if (child$is_alive()) child$kill())
  wait_for_line(child, "START", timeout = 120)
  # The event: the first container process has started (its log file exists).
  deadline <- Sys.time() + 60
  started <- function() length(list.files(file.path(dir, "control-plane"), "\\.log$", recursive = TRUE)) > 0
  while (!started() && Sys.time() < deadline && child$is_alive()) Sys.sleep(0.05)
  expect_true(started())
  sent <- Sys.time()
  child$interrupt()
  out <- wait_for_line(child, "CLASS", timeout = 30)
  returned_after <- as.numeric(difftime(Sys.time(), sent, units = "secs"))
  expect_true(any(grepl("CLASS serverless_error_interrupted", out, fixed = TRUE)),
              info = paste(c(out, child$read_all_error_lines()), collapse = "\n"))
  # Issue 18 measured 3.7 to 5.4 s here; the bound is generous for a loaded machine.
  expect_lt(returned_after, 3)
  out <- wait_for_line(child, "GROUPS", timeout = 60)
  expect_true(any(grepl("GROUPS 0", out, fixed = TRUE)), info = paste(out, collapse = "\n"))
})
