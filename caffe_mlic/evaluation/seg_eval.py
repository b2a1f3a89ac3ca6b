"""`caffe-mlic eval seg` as a library function (the command and `caffe-mlic
run` call it): the label maps of two folders scored, written as JSON and a
confusion CSV / PNG. Apart from evaluation.segmentation, which the plots
import."""
import os

from caffe_mlic.evaluation.segmentation import (BOUNDARY_TOLERANCE, EXCLUDE_FROM_MEAN, LABEL_EXTENSIONS,
                                                MIN_OBJECT_PIXELS, DetailMetrics, SegmentationEvaluator,
                                                class_names, evaluate_dirs, write_confusion_csv)


def evaluate_seg(pred, gt, palette='isprs', classes=None, eroded=False, erode_radius=3, gt_suffix=None,
                 hard_masks=None, hard_distance=None, hard_classes=None, boundary_tolerance=BOUNDARY_TOLERANCE,
                 object_classes=None, min_object_pixels=MIN_OBJECT_PIXELS, json_path=None, confusion_csv=None,
                 confusion_png=None, refuse=None):
    """`caffe-mlic eval seg`: the label maps in folder ``pred`` against those
    in ``gt`` (OA, F1, IoU on the eroded references when ``eroded``; the
    detail metrics on the references as read), written as JSON and the
    confusion as CSV / PNG where paths are given. ``refuse(outputs, inputs,
    folders, among)``: raises when an output would replace an input or go
    into a folder of inputs (the command's check). Returns (result, class names, [per-image info], [ground truths
    not scored])."""
    from caffe_mlic.data.labelmaps import load_palette
    from caffe_mlic.evaluation import write_json

    def label_map(folder):
        return lambda name: (os.path.splitext(name)[1].lower() in LABEL_EXTENSIONS
                             and os.path.isfile(os.path.join(folder, name)))
    folders = [(pred, label_map(pred)), (gt, label_map(gt))]
    if hard_masks:
        folders.append((hard_masks, label_map(hard_masks)))
    if refuse is not None:
        refuse([(json_path, 'json'), (confusion_csv, 'confusion_csv'), (confusion_png, 'confusion_png')],
               [None if palette == 'isprs' else palette], folders, among=[folder for folder, _ in folders])
    colours = load_palette(palette)
    num_classes = classes or len(colours)
    names = class_names(colours, num_classes)
    evaluator = SegmentationEvaluator(num_classes, class_names=names, exclude_from_mean=EXCLUDE_FROM_MEAN)
    detail = DetailMetrics(names, hard_distance=hard_distance, hard_classes=hard_classes, hard_masks=hard_masks,
                           boundary_tolerance=boundary_tolerance, object_classes=object_classes,
                           min_object_pixels=min_object_pixels)
    conf, images, unscored = evaluate_dirs(pred, gt, colours, num_classes, eroded, erode_radius,
                                           gt_suffix=gt_suffix, evaluator=evaluator, detail=detail)
    result = evaluator.evaluate()
    result.update(prediction_dir=os.path.abspath(pred), ground_truth_dir=os.path.abspath(gt),
                  palette=colours.source, eroded=eroded, erode_radius=erode_radius if eroded else None,
                  images=images, not_scored=unscored)
    result.update(detail.evaluate())
    result['detail_reference'] = 'the ground truth as read (not eroded)'
    if confusion_csv:
        write_confusion_csv(confusion_csv, conf, names)
    if confusion_png:
        from caffe_mlic.plotting import plot_confusion
        plot_confusion(confusion_png, conf, names)
    if json_path:
        write_json(json_path, result)
    return result, names, images, unscored
