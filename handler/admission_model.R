# How the handler predicts with an admission model: the plan made when a model loads.
#
# handler.py evaluates this file in an environment whose parent is the stats namespace
# and calls plan_model(model) once per model; the release's build host sources it with
# its full R to find the R packages a model needs (model_namespaces). A model predicts
# from three inputs, gre, gpa and rank, all numbers in the request.
#
# plan_model() answers, for a glm or lm on those inputs, or a model of one of the other
# kinds below (model_kinds: gam, randomForest, ranger, rpart, nnet, multinom):
# - error: why the handler cannot serve the model (a variable it cannot supply, a
#   function no R package here provides, a class no R package here predicts, naming the
#   package to ship), or NULL;
# - predict: function(gre, gpa, rank) giving predict(model, newdata, type = "response")
#   for newdata built the way the model expects: rank as a factor with the model's own
#   levels where it was a factor (or character) in the data, as a number where the model
#   was fitted on numbers (factor(rank) in the formula converts it itself);
# - direct: when the model's design is provably (1, gre, gpa, rank indicators or rank) in
#   some order, function(X) computing what predict.lm and predict.glm compute from the
#   model matrix X, and columns: what fills each column of X (0 the intercept, 1 gre,
#   2 gpa, 3 rank as a number, 10 + k the indicator rank == k); else unmatched, the names
#   of the checks the model failed;
# - ranks: the ranks (of 1 to 4) the model can predict, and rank_levels, the levels of
#   rank the model knows when it treats rank as categorical;
# - bounded: whether every prediction is a probability (a binomial or quasibinomial glm, a
#   classification forest or tree, ...);
# - call: the R call that predicts, naming the method (e.g. predict.randomForest);
# - packages: the R packages whose namespaces predicting needs, loaded here, once.

inputs <- c("gre", "gpa", "rank")
input_ranks <- c(1, 2, 3, 4)
categorical <- c("factor", "ordered", "character")

`%||%` <- function(a, b) if (is.null(a)) b else a  # base R has it from 4.4 only

model_error <- function(...) stop(paste0(...), call. = FALSE)

quoted <- function(x) paste(sQuote(x, FALSE), collapse = ", ")

# Functions an expression calls: a two-column matrix (package or NA, name).
called_functions <- function(expr) {
  found <- character()
  walk <- function(e) {
    if (!is.call(e)) return(invisible())
    f <- e[[1L]]
    if (is.symbol(f)) {
      found <<- c(found, NA, as.character(f))
    } else if (is.call(f) && identical(length(f), 3L) &&
               as.character(f[[1L]]) %in% c("::", ":::")) {
      found <<- c(found, as.character(f[[2L]]), as.character(f[[3L]]))
    } else {
      walk(f)
    }
    args <- as.list(e)[-1L]
    for (i in seq_along(args)) if (!is.symbol(args[[i]])) walk(args[[i]])
  }
  walk(expr)
  calls <- matrix(found, ncol = 2L, byrow = TRUE, dimnames = list(NULL, c("package", "name")))
  unique(calls)
}

# The installed package that exports `name`, read from each package's namespace index
# (nothing is loaded): the namespaces already loaded first, then R's own packages.
find_exporter <- function(name) {
  installed <- .packages(all.available = TRUE)
  own <- c("stats", "splines", "graphics", "grDevices", "utils", "methods", "grid",
           "stats4", "parallel", "tools", "compiler")
  candidates <- unique(c(intersect(loadedNamespaces(), installed), intersect(own, installed),
                         sort(installed)))
  for (package in setdiff(candidates, "base")) {
    info <- file.path(find.package(package, quiet = TRUE), "Meta", "nsInfo.rds")
    if (length(info) != 1L || !file.exists(info)) next
    ns <- readRDS(info)
    if (name %in% ns$exports ||
        any(vapply(ns$exportPatterns, function(p) grepl(p, name), logical(1L)))) {
      return(package)
    }
  }
  NULL
}

# Make every function the model's terms call findable from the terms' environment,
# attaching the package that provides it where R would not find it; else an error
# naming the function and, when the model names it, the package.
resolve_functions <- function(exprs, env) {
  for (expr in exprs) {
    calls <- called_functions(expr)
    for (i in seq_len(nrow(calls))) {
      package <- calls[i, "package"]
      name <- calls[i, "name"]
      if (!is.na(package)) {
        if (!requireNamespace(package, quietly = TRUE)) {
          model_error("the model calls ", package, "::", name, "(), and R package ",
                      sQuote(package, FALSE), " is not in this R (it has ",
                      paste(sort(.packages(all.available = TRUE)), collapse = ", "), ")")
        }
      } else if (!exists(name, envir = env, mode = "function")) {
        package <- find_exporter(name)
        if (is.null(package)) {
          model_error("the model calls ", name, "(), which no R package in this R provides (it has ",
                      paste(sort(.packages(all.available = TRUE)), collapse = ", "),
                      "); a release given the model (lambda_package_model_rds) ships the R ",
                      "packages it needs")
        }
        library(package, character.only = TRUE, warn.conflicts = FALSE, quietly = TRUE)
      }
    }
  }
}

# How newdata carries each input: "numeric", or the class of a categorical rank.
input_classes <- function(model, tt, used, levels = model$xlevels) {
  classes <- attr(tt, "dataClasses")
  sapply(intersect(inputs, used), function(name) {
    class <- if (name %in% names(classes)) classes[[name]] else "numeric"
    if (identical(class, "numeric")) return(class)
    if (name == "rank" && class %in% categorical) {
      if (is.null(levels$rank)) {
        model_error("rank was a ", class, " in the model's data but the model records no levels for it")
      }
      return(class)
    }
    model_error(name, " was a ", class, " in the model's data; the handler supplies ", name,
                " as a number", if (name == "rank") " or as a factor of the model's levels")
  })
}

newdata_builder <- function(model, classes, levels = model$xlevels$rank) {
  rank_class <- if ("rank" %in% names(classes)) classes[["rank"]] else "numeric"
  as_rank <- switch(rank_class,
    numeric = function(rank) rank,
    character = function(rank) as.character(rank),
    factor = function(rank) factor(as.character(rank), levels = levels),
    ordered = function(rank) factor(as.character(rank), levels = levels, ordered = TRUE)
  )
  function(gre, gpa, rank) list2DF(list(gre = gre, gpa = gpa, rank = as_rank(rank)))
}

# What fills a column of the model matrix for one main-effect variable: "gre", "gpa",
# "rank" (a number) or "rank_factor" (indicators); NULL when not one of these forms.
variable_kind <- function(predvar, class, levels) {
  if (is.symbol(predvar)) {
    name <- as.character(predvar)
    if (name %in% c("gre", "gpa") && identical(class, "numeric")) return(name)
    if (name == "rank") {
      if (identical(class, "numeric")) return("rank")
      if (class %in% c("factor", "character")) return("rank_factor")
    }
    return(NULL)
  }
  if (!is.call(predvar) || !identical(class, "factor")) return(NULL)
  f <- predvar[[1L]]
  args <- as.list(predvar)[-1L]
  if (!(identical(f, quote(factor)) || identical(f, quote(as.factor)))) return(NULL)
  if (!identical(args[[1L]], quote(rank)) || !is.null(names(args)) && names(args)[1L] != "") {
    return(NULL)
  }
  if (length(args) == 1L) return("rank_factor")
  # train.R's factor(rank, levels = c("1", ...)), with the levels the model records.
  if (identical(f, quote(factor)) && length(args) == 2L && identical(names(args)[2L], "levels") &&
      identical(args[[2L]], levels)) {
    return("rank_factor")
  }
  NULL
}

# The design of the direct computation, or the names of the checks the model fails.
direct_design <- function(model, tt) {
  failed <- character()
  check <- function(name, ok) if (!isTRUE(ok)) failed <<- c(failed, name)
  check("offset", is.null(attr(tt, "offset")) && is.null(model$call$offset))
  check("interactions", all(attr(tt, "order") == 1L))
  beta <- model$coefficients
  check("estimable", !anyNA(beta) && identical(model$rank, length(beta)) &&
          identical(model$qr$pivot, seq_along(beta)))
  if (length(failed)) return(list(unmatched = failed))
  classes <- attr(tt, "dataClasses")
  variables <- vapply(as.list(attr(tt, "variables"))[-1L], function(v) paste(deparse(v), collapse = ""), "")
  predvars <- as.list(attr(tt, "predvars") %||% attr(tt, "variables"))[-1L]
  factors <- attr(tt, "factors")
  intercept <- identical(attr(tt, "intercept"), 1L)
  coef_names <- if (intercept) "(Intercept)" else character()
  columns <- if (intercept) 0L else integer()
  full_coding <- !intercept  # without an intercept the first factor codes every level
  ranks <- input_ranks  # a numeric rank, or none, takes any of them
  for (label in attr(tt, "term.labels")) {
    at <- match(rownames(factors)[factors[, label] > 0], variables)
    levels <- model$xlevels[[label]]
    kind <- if (length(at) == 1L) {
      variable_kind(predvars[[at]], unname(classes[variables[at]]), levels)
    }
    if (is.null(kind)) return(list(unmatched = "terms"))
    if (kind != "rank_factor") {
      coef_names <- c(coef_names, label)
      columns <- c(columns, match(kind, c("gre", "gpa", "rank")))
      next
    }
    ranks <- suppressWarnings(as.numeric(levels))
    if (is.null(levels) || anyNA(ranks) || !all(ranks %in% input_ranks) ||
        !identical(as.character(ranks), levels)) {
      return(list(unmatched = "levels"))
    }
    if (!identical(model$contrasts[[label]], "contr.treatment")) {
      return(list(unmatched = "contrasts"))
    }
    ranks <- intersect(ranks, as.numeric(levels))
    coded <- if (full_coding) levels else levels[-1L]
    full_coding <- FALSE
    coef_names <- c(coef_names, paste0(label, coded))
    columns <- c(columns, 10L + as.integer(coded))
  }
  if (!identical(names(beta), coef_names)) return(list(unmatched = "coefficients"))
  list(unmatched = character(), columns = columns, ranks = ranks)
}

# predict.lm's arithmetic on the model matrix: drop(X[, piv] %*% beta[piv]) with piv the
# identity here (checked above) and no offset; predict.glm then applies the inverse link.
# (R < 4.3 also adds rep(0, n): that changes no value, only -0 to 0.)
direct_predictor <- function(model) {
  beta <- model$coefficients
  if (inherits(model, "glm")) {
    linkinv <- model$family$linkinv
    function(X) linkinv(drop(X %*% beta))
  } else {
    function(X) drop(X %*% beta)
  }
}

# The ranks (of 1 to 4) a model predicts with: a rank it never saw fails predict() (or
# gives NA: a level the newdata factor does not have), so each is tried. An error when
# none works.
working_ranks <- function(predict_response) {
  works <- vapply(input_ranks, function(rank) {
    value <- tryCatch(predict_response(500, 3, rank), error = function(e) NA_real_)
    length(value) == 1L && !is.na(value)
  }, logical(1L))
  if (!any(works)) {
    tryCatch(predict_response(500, 3, 1), error = function(e) {
      model_error("the model cannot predict from gre, gpa and rank: ", conditionMessage(e))
    })
    model_error("the model predicts no number from gre, gpa and rank")
  }
  input_ranks[works]
}

# The variables a model's terms use, refused unless all are inputs; functions they call
# are made findable (resolve_functions).
check_variables <- function(used, exprs = list(), env = globalenv()) {
  unknown <- setdiff(used, inputs)
  if (length(unknown)) {
    model_error("the model uses ", if (length(unknown) == 1L) "variable " else "variables ",
                quoted(unknown), ", which the handler cannot supply: requests carry only gre, gpa and rank")
  }
  resolve_functions(exprs, env)
}

plan_linear <- function(model) {
  tt <- tryCatch(terms(model), error = function(e) NULL)
  if (!inherits(tt, "terms")) model_error("the model has no terms (is it a fitted glm or lm?)")
  dtt <- delete.response(tt)
  env <- environment(tt) %||% globalenv()
  predvars <- attr(dtt, "predvars") %||% attr(dtt, "variables")
  offset <- model$call$offset
  used <- unique(c(all.vars(attr(dtt, "variables")), all.vars(predvars), all.vars(offset)))
  check_variables(used, list(predvars, offset), env)
  classes <- input_classes(model, tt, used)
  newdata <- newdata_builder(model, classes)
  predict_response <- function(gre, gpa, rank) {
    as.double(stats::predict(model, newdata = newdata(gre, gpa, rank), type = "response"))
  }
  design <- direct_design(model, tt)
  # A direct design says which ranks the model takes (the levels of its rank indicators).
  ranks <- if (length(design$unmatched)) working_ranks(predict_response) else design$ranks
  rank_levels <- unique(unlist(model$xlevels[vapply(names(model$xlevels), function(n) {
    identical(all.vars(str2lang(n)), "rank")
  }, logical(1L))], use.names = FALSE))
  family <- if (inherits(model, "glm")) model$family else NULL
  direct <- !length(design$unmatched)
  list(
    predict = predict_response,
    direct = if (direct) direct_predictor(model) else NULL,
    columns = if (direct) design$columns else integer(),
    unmatched = design$unmatched,
    ranks = input_ranks[input_ranks %in% ranks],
    rank_levels = as.character(rank_levels),
    bounded = !is.null(family) && family$family %in% c("binomial", "quasibinomial"),
    kind = if (is.null(family)) "lm" else sprintf("glm %s(%s)", family$family, family$link),
    call = if (direct) {
      "the model matrix %*% coefficients, then family$linkinv (predict.lm, predict.glm)"
    } else {
      sprintf("stats::%s(model, newdata, type = \"response\")",
              if (is.null(family)) "predict.lm" else "predict.glm")
    },
    packages = "stats"
  )
}

# ------------------------------------------------------------- models other than glm/lm

# The kinds served besides glm and lm, by class (the first of a model's classes found
# here): the R package whose predict method serves it, and what reads P(admit), or the
# prediction of a regression, from that method's answer. Each reader gets the method,
# the model and newdata, and returns list(value = function(newdata), call, bounded) or
# stops naming why the model cannot be served.
positive_classes <- c("1", "TRUE", "admit", "admitted", "yes")

positive_class <- function(levels, must_be = NULL) {
  positive <- intersect(positive_classes, levels)[1L]
  if (is.na(positive) || (!is.null(must_be) && !identical(positive, must_be))) {
    model_error("the model's classes are ", quoted(levels), "; the handler answers the ",
                "probability of admission, the class ", quoted(positive_classes[1L]),
                " (or TRUE, admit, yes)", if (!is.null(must_be)) " as the second of two classes")
  }
  positive
}

prob_of <- function(method, type, positive) {
  list(value = function(model, newdata) as.double(method(model, newdata, type = type)[, positive]),
       call = sprintf('(model, newdata, type = "%s")[, "%s"]', type, positive), bounded = TRUE)
}

model_kinds <- list(
  gam = list(package = "mgcv", read = function(method, model) {
    family <- model$family
    list(value = function(model, newdata) as.double(method(model, newdata, type = "response")),
         call = '(model, newdata, type = "response")',
         bounded = family$family %in% c("binomial", "quasibinomial"),
         kind = sprintf("gam %s(%s)", family$family, family$link))
  }),
  randomForest = list(package = "randomForest", read = function(method, model) {
    if (identical(model$type, "classification")) {
      return(prob_of(method, "prob", positive_class(model$classes)))
    }
    list(value = function(model, newdata) as.double(method(model, newdata)),
         call = "(model, newdata)", bounded = FALSE)
  }),
  ranger = list(package = "ranger", read = function(method, model) {
    switch(model$treetype,
      "Probability estimation" = {
        positive <- positive_class(model$forest$levels %||% colnames(model$predictions))
        list(value = function(model, newdata) as.double(method(model, newdata)$predictions[, positive]),
             call = sprintf('(model, newdata)$predictions[, "%s"]', positive), bounded = TRUE)
      },
      Regression = list(value = function(model, newdata) as.double(method(model, newdata)$predictions),
                        call = "(model, newdata)$predictions", bounded = FALSE),
      model_error("the model is a ranger forest of type ", quoted(model$treetype),
                  ", which predicts no probability: fit it with probability = TRUE")
    )
  }),
  rpart = list(package = "rpart", read = function(method, model) {
    if (identical(model$method, "class")) {
      return(prob_of(method, "prob", positive_class(attr(model, "ylevels"))))
    }
    list(value = function(model, newdata) as.double(method(model, newdata, type = "vector")),
         call = '(model, newdata, type = "vector")', bounded = FALSE)
  }),
  multinom = list(package = "nnet", read = function(method, model) {
    positive_class(model$lev, must_be = if (length(model$lev) == 2L) model$lev[2L])
    list(value = function(model, newdata) as.double(method(model, newdata, type = "probs")),
         call = '(model, newdata, type = "probs")', bounded = TRUE)
  }),
  nnet = list(package = "nnet", read = function(method, model) {
    if (is.null(model$terms)) model_error("the nnet model was fitted without a formula, so its inputs have no names")
    if (model$n[3L] != 1L) model_error("the nnet model has ", model$n[3L], " outputs; the handler reads one")
    if (length(model$lev)) positive_class(model$lev, must_be = model$lev[2L])
    list(value = function(model, newdata) as.double(method(model, newdata, type = "raw")[, 1L]),
         call = '(model, newdata, type = "raw")[, 1]',
         bounded = length(model$lev) > 0L || model$nsunits == model$nunits)  # no linout
  })
)

# Packages that provide a predict method for some well-known classes not served here,
# for the error that names the package to ship.
known_packages <- c(svm = "e1071", naiveBayes = "e1071", gbm = "gbm", xgb.Booster = "xgboost",
                    train = "caret", glmnet = "glmnet", cv.glmnet = "glmnet", earth = "earth",
                    negbin = "MASS", polr = "MASS", lda = "MASS", qda = "MASS", ksvm = "kernlab",
                    C5.0 = "C50", ctree = "partykit", BinaryTree = "party")

# The installed package (not loaded) whose namespace registers predict.<class>.
predict_provider <- function(classes) {
  for (package in sort(.packages(all.available = TRUE))) {
    info <- file.path(find.package(package, quiet = TRUE), "Meta", "nsInfo.rds")
    if (length(info) != 1L || !file.exists(info)) next
    s3 <- readRDS(info)$S3methods
    if (length(s3) && any(s3[, 1L] == "predict" & s3[, 2L] %in% classes)) return(package)
  }
  NULL
}

unserved_class <- function(classes) {
  provider <- predict_provider(classes)
  if (!is.null(provider)) {
    model_error("the model is of class ", quoted(classes), ", predicted by R package ",
                sQuote(provider, FALSE), ", whose answer the handler does not know how to read: it ",
                "serves glm, lm, ", paste(names(model_kinds), collapse = ", "), " models")
  }
  package <- unname(known_packages[intersect(classes, names(known_packages))][1L])
  model_error("the model is of class ", quoted(classes), ", and no R package in this R has a ",
              "predict method for it: add ", if (is.na(package)) "the R package that provides it" else
                sQuote(package, FALSE), " to the setting lambda_package_model_packages")
}

# The inputs, and how rank comes in newdata, for a model of one of model_kinds.
kind_inputs <- function(model) {
  if (!is.null(model$forest$independent.variable.names)) {  # ranger: converts rank itself
    check_variables(model$forest$independent.variable.names)
    return(list(classes = c(rank = "numeric"), levels = NULL))
  }
  levels <- model$xlevels %||% attr(model, "xlevels")
  if (inherits(model, "randomForest")) {
    levels <- Filter(is.character, model$forest$xlevels)
    if (is.null(model$terms)) {  # fitted on x and y: rank a factor exactly when it has levels
      check_variables(names(model$forest$xlevels))
      return(list(classes = c(rank = if (is.null(levels$rank)) "numeric" else "factor"), levels = levels))
    }
  }
  tt <- tryCatch(terms(model), error = function(e) NULL)
  if (!inherits(tt, "terms")) model_error("the model has no terms, so its inputs have no names")
  dtt <- delete.response(tt)
  predvars <- attr(dtt, "predvars") %||% attr(dtt, "variables")
  used <- unique(c(all.vars(attr(dtt, "variables")), all.vars(predvars)))
  check_variables(used, list(predvars), environment(tt) %||% globalenv())
  list(classes = input_classes(model, tt, used, levels), levels = levels)
}

plan_kind <- function(model) {
  classes <- class(model)
  kind <- intersect(classes, names(model_kinds))[1L]
  if (is.na(kind)) unserved_class(classes)
  package <- model_kinds[[kind]]$package
  if (!requireNamespace(package, quietly = TRUE)) {
    model_error("the model is of class ", quoted(classes), ", predicted by R package ",
                sQuote(package, FALSE), ", which is not in this R: add ", sQuote(package, FALSE),
                " to the setting lambda_package_model_packages")
  }
  method_name <- paste0("predict.", kind)
  method <- utils::getS3method("predict", kind, optional = TRUE, envir = asNamespace(package))
  if (is.null(method)) unserved_class(classes)
  reader <- model_kinds[[kind]]$read(method, model)
  inputs <- kind_inputs(model)
  newdata <- newdata_builder(model, inputs$classes, inputs$levels$rank)
  predict_response <- function(gre, gpa, rank) reader$value(model, newdata(gre, gpa, rank))
  list(
    predict = predict_response,
    direct = NULL,
    columns = integer(),
    unmatched = "class",
    ranks = working_ranks(predict_response),
    rank_levels = as.character(inputs$levels$rank),
    bounded = isTRUE(reader$bounded),
    kind = reader$kind %||% trimws(paste(kind, model$type %||% model$method %||% model$treetype %||% "")),
    call = paste0(package, ":::", method_name, reader$call),
    packages = package
  )
}

plan_model <- function(model) {
  class <- class(model)
  if (identical(class, c("glm", "lm")) || identical(class, "lm")) return(plan_linear(model))
  plan_kind(model)
}

# plan_model(), with an error as list(error = message).
plan <- function(model) {
  tryCatch(plan_model(model), error = function(e) list(error = conditionMessage(e)))
}

# The namespaces predicting with the model needs (on top of what R loads by itself):
# what the release ships in the package's R library.
model_namespaces <- function(model) {
  planned <- plan(model)
  if (!is.null(planned$error)) stop(planned$error, call. = FALSE)
  for (rank in planned$ranks) planned$predict(c(200, 800), c(0, 4), c(rank, rank))
  sort(loadedNamespaces())
}
