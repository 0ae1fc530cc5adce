"""Metrics: eval_metrics by hand, IoUMetric against it, per-learner view,
distributed merging."""
import numpy as np
import pytest
import torch
from mmengine.evaluator import Evaluator
from mmengine.structures import PixelData
from PIL import Image

from mmseg.evaluation import IoUMetric, eval_metrics, intersect_and_union
from mmseg.structures import SegDataSample

nan = float('nan')


def test_hand_computed_iou_acc_and_absent_class():
    # 3 classes; class 2 in neither prediction nor ground truth
    pred = np.array([[0, 0, 1], [1, 1, 0]])
    gt = np.array([[0, 1, 1], [1, 255, 0]])
    ret = eval_metrics([pred], [gt], num_classes=3, ignore_index=255)
    # pixel 11 is ignored, whatever its prediction
    # class 0: pred {00,01,12}, gt {00,12}: inter 2, union 3
    # class 1: pred {02,10}, gt {01,02,10}: inter 2, union 3
    np.testing.assert_allclose(ret['IoU'], [2 / 3, 2 / 3, nan])
    np.testing.assert_allclose(ret['Acc'], [2 / 2, 2 / 3, nan])
    np.testing.assert_allclose(ret['aAcc'], 4 / 5)
    assert set(ret) == {'aAcc', 'Acc', 'IoU'}

    ret = eval_metrics([pred], [gt], 3, 255, nan_to_num=-1)
    np.testing.assert_allclose(ret['IoU'], [2 / 3, 2 / 3, -1])


def test_dice_fscore_precision_recall():
    pred = np.array([[0, 0, 1, 1]])
    gt = np.array([[0, 1, 1, 1]])
    ret = eval_metrics([pred], [gt], 2, 255, ['mDice', 'mFscore'], beta=2)
    # class 0: inter 1, pred 2, gt 1; class 1: inter 2, pred 2, gt 3
    np.testing.assert_allclose(ret['Dice'], [2 / 3, 4 / 5])
    np.testing.assert_allclose(ret['Precision'], [1 / 2, 1])
    np.testing.assert_allclose(ret['Recall'], [1, 2 / 3])
    p, r = np.array([1 / 2, 1]), np.array([1, 2 / 3])
    np.testing.assert_allclose(ret['Fscore'], 5 * p * r / (4 * p + r))
    assert 'IoU' not in ret
    with pytest.raises(KeyError, match='mAP'):
        eval_metrics([pred], [gt], 2, 255, ['mAP'])


def test_reduce_zero_label_and_label_map():
    pred = np.array([[0, 1, 1, 0]])
    raw = np.array([[1, 2, 0, 3]])  # 0 = other; 1..3 classes
    ret = eval_metrics([pred], [raw], 3, 255, reduce_zero_label=True)
    # reduced ground truth: [0, 1, 255, 2]
    np.testing.assert_allclose(ret['IoU'], [1 / 2, 1 / 1, 0])
    np.testing.assert_allclose(ret['aAcc'], 2 / 3)
    # label_map applies to the raw values first (MMSegmentation 0.x)
    ret = eval_metrics([pred], [raw], 3, 255, label_map={3: 2},
                       reduce_zero_label=True)
    # raw -> [1, 2, 0, 2] -> reduced [0, 1, 255, 1]
    np.testing.assert_allclose(ret['IoU'], [1 / 2, 1 / 2, nan])
    ret = eval_metrics([pred], [np.array([[5, 6, 6, 5]])], 2, 255,
                       label_map={5: 0, 6: 1})
    np.testing.assert_allclose(ret['IoU'], [1, 1])


def test_accumulates_over_images_and_reads_files(tmp_path):
    preds = [np.array([[0, 1]]), np.array([[1, 1]])]
    gts = [np.array([[0, 0]]), np.array([[1, 255]])]
    ret = eval_metrics(preds, gts, 2, 255)
    # totals: class 0 inter 1, union 2; class 1 inter 1, union 2
    np.testing.assert_allclose(ret['IoU'], [1 / 2, 1 / 2])
    # ground truth as label-map files, predictions as .npy files
    paths = []
    for i, (p, g) in enumerate(zip(preds, gts)):
        np.save(tmp_path / f'p{i}.npy', p)
        Image.fromarray(g.astype(np.uint8)).save(tmp_path / f'g{i}.png')
        paths.append(
            (str(tmp_path / f'p{i}.npy'), str(tmp_path / f'g{i}.png')))
    ret2 = eval_metrics([p for p, _ in paths], [g for _, g in paths], 2, 255)
    np.testing.assert_allclose(ret2['IoU'], ret['IoU'])


def test_bad_values_and_shapes_are_named():
    with pytest.raises(ValueError,
                       match=r'gt_seg_maps\[1\]: label value\(s\) \[7\]'):
        eval_metrics([np.zeros((2, 2))] * 2,
                     [np.zeros((2, 2)), np.full((2, 2), 7)], 3, 255)
    with pytest.raises(ValueError, match=r'prediction value\(s\) \[3\]'):
        intersect_and_union(np.full((2, 2), 3), np.zeros((2, 2)), 3, 255)
    with pytest.raises(ValueError, match=r'\(2, 2\) but its ground truth'):
        intersect_and_union(np.zeros((2, 2)), np.zeros((2, 3)), 3, 255)


# ----------------------------------------------------------------------
# IoUMetric

CLASSES = ('a', 'b', 'c', 'd')


def _samples(n, num_learners=0, seed=0, shape=(6, 8)):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for i in range(n):
        gt = torch.randint(0, 4, (1, *shape), generator=g)
        gt[0, 0, :2] = 255
        logits = torch.randn(4, *shape, generator=g)
        sample = SegDataSample(
            gt_sem_seg=PixelData(data=gt),
            pred_sem_seg=PixelData(data=logits.argmax(0, keepdim=True)),
            metainfo=dict(img_path=f'img{i}.jpg', ori_shape=shape))
        if num_learners:
            sample.extra_logits = PixelData(**{
                f'learner{j}': torch.randn(4, *shape, generator=g)
                for j in range(num_learners)
            })
        samples.append(sample)
    return samples


def _metric(**kwargs):
    metric = IoUMetric(**kwargs)
    metric.dataset_meta = dict(classes=CLASSES)
    return metric


def _expected(preds, gts, **kwargs):
    ret = eval_metrics(preds, gts, len(CLASSES), 255, **kwargs)
    return {
        key if key == 'aAcc' else 'm' + key: round(
            float(np.nanmean(value)) * 100, 2)
        for key, value in ret.items()
    }


def test_iou_metric_equals_eval_metrics():
    samples = _samples(5)
    metric = _metric(iou_metrics=['mIoU', 'mDice', 'mFscore'])
    # mmengine's evaluator hands over to_dict() forms; objects work too
    metric.process({}, [s.to_dict() for s in samples[:3]])
    metric.process({}, samples[3:])
    assert metric.results == []  # only running sums are kept
    result = metric.evaluate(5)
    expected = _expected([s.pred_sem_seg.data[0] for s in samples],
                         [s.gt_sem_seg.data[0] for s in samples],
                         metrics=['mIoU', 'mDice', 'mFscore'])
    assert list(result)[:3] == ['aAcc', 'mIoU', 'mDice']
    assert result == pytest.approx(expected)
    # state reset for the next evaluation
    metric.process({}, samples[:1])
    assert metric.evaluate(1)['aAcc'] == _expected(
        [samples[0].pred_sem_seg.data[0]],
        [samples[0].gt_sem_seg.data[0]])['aAcc']


def test_iou_metric_through_mmengine_evaluator(capsys):
    samples = _samples(3)
    evaluator = Evaluator(IoUMetric())
    evaluator.dataset_meta = dict(classes=CLASSES)
    evaluator.process(samples, data_batch={})
    result = evaluator.evaluate(3)
    assert set(result) == {'aAcc', 'mIoU', 'mAcc'}
    assert result['mIoU'] == _expected(
        [s.pred_sem_seg.data[0] for s in samples],
        [s.gt_sem_seg.data[0] for s in samples])['mIoU']


def test_per_learner_numbers_equal_separate_evaluations():
    samples = _samples(4, num_learners=4)
    metric = _metric(per_learner=True)
    metric.process({}, [s.to_dict() for s in samples])
    result = metric.evaluate(4)
    gts = [s.gt_sem_seg.data[0] for s in samples]
    assert result['mIoU'] == _expected(
        [s.pred_sem_seg.data[0] for s in samples], gts)['mIoU']
    for i in range(4):
        learner = _expected(
            [s.extra_logits.get(f'learner{i}').argmax(0) for s in samples],
            gts)
        assert result[f'learner{i}_mIoU'] == learner['mIoU']
    assert 'learner4_mIoU' not in result


def test_per_learner_without_learner_maps_says_so():
    metric = _metric(per_learner=True)
    with pytest.raises(ValueError, match='return_learners=True'):
        metric.process({}, _samples(1))


def test_distributed_ranks_drop_the_padding_repeats():
    """5 samples on 2 ranks: rank 0 gets 0, 2, 4 and rank 1 gets 1, 3 and
    a repeat of sample 0 (mmengine's DefaultSampler)."""
    samples = _samples(5, num_learners=2)
    ranks = [_metric(per_learner=True), _metric(per_learner=True)]
    ranks[0].process({}, [samples[i] for i in (0, 2, 4)])
    ranks[1].process({}, [samples[i] for i in (1, 3, 0)])
    summaries = [
        dict(total=m._total, latest=m._latest, count=m._count,
             extra_names=m._extra_names) for m in ranks
    ]
    main = ranks[0]
    main._dataset_size = 5
    result = main.compute_metrics(summaries)
    gts = [s.gt_sem_seg.data[0] for s in samples]
    assert result['mIoU'] == _expected(
        [s.pred_sem_seg.data[0] for s in samples], gts)['mIoU']
    assert result['learner1_mIoU'] == _expected(
        [s.extra_logits.learner1.argmax(0) for s in samples], gts)['mIoU']
    # with an even split nothing is dropped
    main._dataset_size = 6
    assert main.compute_metrics(summaries)['aAcc'] == _expected(
        [s.pred_sem_seg.data[0] for s in samples + samples[:1]],
        gts + gts[:1])['aAcc']


def test_iou_metric_errors_name_the_image():
    sample = _samples(1)[0]
    sample.gt_sem_seg = PixelData(data=torch.zeros(1, 3, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"img0.jpg' is \(6, 8\) but its "
                       r'ground truth is \(3, 3\)'):
        _metric().process({}, [sample])
    del sample.gt_sem_seg
    with pytest.raises(ValueError, match='img0.jpg.* no gt_sem_seg'):
        _metric().process({}, [sample])
    with pytest.raises(ValueError, match="dataset_meta\\['classes'\\]"):
        IoUMetric().process({}, _samples(1))


def test_output_dir_and_format_only(tmp_path):
    samples = _samples(2)
    for s in samples:
        s.set_metainfo(dict(reduce_zero_label=True))
        del s.gt_sem_seg
    metric = _metric(output_dir=str(tmp_path), format_only=True)
    metric.process({}, samples)
    assert metric.evaluate(2) == {}
    saved = np.array(Image.open(tmp_path / 'img1.png'))
    np.testing.assert_array_equal(saved,
                                  samples[1].pred_sem_seg.data[0] + 1)

    metric = _metric(output_dir=str(tmp_path / 'tmp'), keep_results=False)
    metric.process({}, _samples(2))
    assert (tmp_path / 'tmp' / 'img0.png').exists()
    metric.evaluate(2)
    assert not (tmp_path / 'tmp' / 'img0.png').exists()
    with pytest.raises(ValueError, match='needs output_dir'):
        IoUMetric(format_only=True)


def _dist_worker(rank, world_size, port, queue):
    import torch.distributed as dist
    from mmengine.dataset import DefaultSampler
    dist.init_process_group(
        'gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank,
        world_size=world_size)
    try:
        samples = _samples(5, num_learners=2)
        sampler = DefaultSampler(samples, shuffle=False, round_up=True)
        metric = _metric(per_learner=True)
        for index in sampler:  # rank 1 also gets a repeat of sample 0
            metric.process({}, [samples[index]])
        queue.put((rank, metric.evaluate(len(samples))))
    finally:
        dist.destroy_process_group()


def test_iou_metric_on_two_distributed_ranks():
    import multiprocessing
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    context = multiprocessing.get_context('fork')
    queue = context.Queue()
    workers = [
        context.Process(target=_dist_worker, args=(rank, 2, port, queue))
        for rank in range(2)
    ]
    for worker in workers:
        worker.start()
    results = dict(queue.get(timeout=60) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    samples = _samples(5, num_learners=2)
    gts = [s.gt_sem_seg.data[0] for s in samples]
    assert results[0] == results[1]  # every rank gets the metrics
    assert results[0]['mIoU'] == _expected(
        [s.pred_sem_seg.data[0] for s in samples], gts)['mIoU']
    assert results[0]['learner0_mIoU'] == _expected(
        [s.extra_logits.learner0.argmax(0) for s in samples], gts)['mIoU']
